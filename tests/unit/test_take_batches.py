"""The agents' batch loop: an agent that is behind takes what is queued at once; an idle one waits a
little to gather a burst into one batch."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from recstream.agents.common import take_batches

TP = ("t", 0)


class _Event:
    def __init__(self, offset: int) -> None:
        self.message = SimpleNamespace(
            topic="take-batches-test", tp=TP, offset=offset, generation_id=1, timestamp=0.0
        )
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def _stream(queue: asyncio.Queue) -> SimpleNamespace:
    queue._clear_on_resume = True

    class Iterator:  # what `aiter(channel)` gives: the subscription, with its queue
        def __init__(self) -> None:
            self.queue = queue

        def __aiter__(self):  # noqa: ANN204
            return self

        async def __anext__(self):  # noqa: ANN204
            raise StopAsyncIteration

    consumer = SimpleNamespace(
        assignment=lambda: {TP},
        _committed_offset={},
        _recstream_fast_delivery=True,
        _recstream_gated=True,
        _unacked_messages=set(),
        _n_acked=0,
        _waiting_for_ack=None,
    )
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=1,
        flow_control=SimpleNamespace(_queues=set(), is_active=lambda: True),
        topics=set(),
        recstream_settings=SimpleNamespace(consumer_fetch_max_wait_ms=100),
    )

    class Channel:
        def __aiter__(self):  # noqa: ANN204
            return Iterator()

    return SimpleNamespace(channel=Channel(), app=app)


def test_events_already_waiting_go_at_once_and_an_idle_agent_gathers_a_burst() -> None:
    async def run() -> tuple[list[int], float, list[int]]:
        queue: asyncio.Queue = asyncio.Queue()
        for i in range(5):
            queue.put_nowait(_Event(i))
        batches = take_batches(_stream(queue), 100, 5.0, asyncio.Lock())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = [e.message.offset for e in await anext(batches)]
        behind_s = loop.time() - t0  # events were waiting: no 5 s linger

        async def burst() -> None:  # the queue is empty now: the next batch waits for these
            for i in range(5, 8):
                queue.put_nowait(_Event(i))
                await asyncio.sleep(0.01)

        asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(burst()))
        second = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.2)
        assert not second.done()  # still gathering within the 5 s window
        queue.put_nowait(_Event(8))
        # 100 events fill a batch before the window ends
        for i in range(9, 105):
            queue.put_nowait(_Event(i))
        got = [e.message.offset for e in await second]
        await batches.aclose()
        return first, behind_s, got

    first, behind_s, second = asyncio.run(run())
    assert first == [0, 1, 2, 3, 4]
    assert behind_s < 1.0
    assert second == list(range(5, 105))
