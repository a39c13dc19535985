"""The delivery fast path: a delivery that does not block finishes in place; one that blocks runs as
Faust runs it, raced against the flow suspension of a rebalance (and abandoned if that comes first)."""

import asyncio

import mode

from recstream.streaming import delivery


class _Consumer(mode.Service):
    """What `_drain_messages` uses of a Faust consumer: mode's `wait_first` and the suspend event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


async def _deliver(consumer: _Consumer, callback) -> None:  # noqa: ANN001 - as _drain_messages calls it
    await consumer.wait_first(callback, consumer.suspend_flow.wait())


def test_a_delivery_that_does_not_block_finishes_in_place() -> None:
    async def run() -> list[int]:
        consumer, done = _Consumer(), []
        delivery.install(consumer)

        async def callback() -> None:
            done.append(1)

        tasks_before = len(asyncio.all_tasks())
        await _deliver(consumer, callback())
        assert len(asyncio.all_tasks()) == tasks_before  # no task was made for it
        return done

    assert asyncio.run(run()) == [1]


def test_a_blocked_delivery_continues_where_it_stopped() -> None:
    async def run() -> list[str]:
        consumer, steps, room = _Consumer(), [], asyncio.Event()
        delivery.install(consumer)

        async def callback() -> None:
            steps.append("started")
            await room.wait()  # a full buffer
            steps.append("delivered")

        asyncio.get_running_loop().call_later(0.05, room.set)
        await _deliver(consumer, callback())
        return steps

    assert asyncio.run(run()) == ["started", "delivered"]


def test_a_blocked_delivery_is_abandoned_when_a_rebalance_suspends_the_flow() -> None:
    async def run() -> tuple[list[str], bool]:
        consumer, steps, room = _Consumer(), [], asyncio.Event()
        delivery.install(consumer)

        async def callback() -> None:
            steps.append("started")
            try:
                await room.wait()
                steps.append("delivered")
            except asyncio.CancelledError:
                steps.append("abandoned")
                raise

        loop = asyncio.get_running_loop()
        loop.call_later(0.05, consumer.suspend_flow.set)
        loop.call_later(0.2, room.set)  # the buffer frees up only after the rebalance began
        await _deliver(consumer, callback())
        await asyncio.sleep(0.3)
        return steps, room.is_set()

    steps, freed = asyncio.run(run())
    assert freed and steps == ["started", "abandoned"]


def test_a_partition_buffered_when_revoked_does_not_come_back_before_recovery_resumes_it() -> None:
    """Faust's own on_buffer_full / on_buffer_drop, on a partition revoked while its queue was full."""
    from types import SimpleNamespace

    from faust.transport.consumer import Consumer

    tp = ("rs.interactions", 3)
    active: set = {tp}
    consumer = SimpleNamespace(
        app=SimpleNamespace(in_recovery=False),
        _buffered_partitions=set(),
        _get_active_partitions=lambda: active,
    )
    Consumer.on_buffer_full(consumer, tp)  # the agent's queue under pressure: off the fetch list, marked
    assert tp not in active and tp in consumer._buffered_partitions
    delivery.forget_buffered(consumer, {tp})  # the partition is revoked (and assigned again, paused)
    Consumer.on_buffer_drop(consumer, tp)  # the queue drains while the tables recover
    assert tp not in active and tp not in consumer._buffered_partitions


def test_the_fetch_wait_is_bounded_on_aiokafkas_fetcher() -> None:
    import inspect
    from types import SimpleNamespace

    from aiokafka.consumer.fetcher import Fetcher

    fetcher = SimpleNamespace(_fetch_max_wait_ms=1500)
    consumer = SimpleNamespace(_thread=SimpleNamespace(_consumer=SimpleNamespace(_fetcher=fetcher)))
    delivery.limit_fetch_wait(consumer, 100)
    assert fetcher._fetch_max_wait_ms == 100
    delivery.limit_fetch_wait(SimpleNamespace(), 100)  # no consumer thread yet: nothing to do
    # The internal it sets: what aiokafka puts in every FetchRequest (fails if aiokafka renames it).
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)
    assert "self._fetch_max_wait_ms," in inspect.getsource(Fetcher._get_actions_per_node)
    from faust.transport.consumer import ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "self._consumer = self._create_consumer(" in inspect.getsource(AIOKafkaConsumerThread)
    assert "self._thread = self._new_consumer_thread()" in inspect.getsource(ThreadDelegateConsumer)


def test_a_batch_is_acked_as_faust_acks_each_event_without_its_per_offset_bookkeeping() -> None:
    """ack_batch: gated topics' messages are acked (refcount respected), leave the unacked set that a
    rebalance waits on, count toward commit-every-N and wake that wait; other topics' events go
    through Faust's own ack."""
    import weakref
    from types import SimpleNamespace

    from faust.types.tuples import ConsumerMessage

    def message(topic: str, offset: int, refcount: int = 1) -> ConsumerMessage:
        m = ConsumerMessage(topic, 0, offset, 0.0, 0, None, b"k", b"v", None)
        m.refcount = refcount
        return m

    async def run() -> None:
        mine = [message("gated", o) for o in range(3)]
        shared = message("gated", 3, refcount=2)  # held by two streams: the first ack leaves it pending
        theirs = SimpleNamespace(message=message("other", 0), acks=0)
        theirs.ack = lambda: setattr(theirs, "acks", theirs.acks + 1)
        waiter = asyncio.get_running_loop().create_future()
        consumer = SimpleNamespace(
            _unacked_messages=weakref.WeakSet([*mine, shared]), _n_acked=5, _waiting_for_ack=waiter
        )
        events = [SimpleNamespace(message=m) for m in [*mine, shared]] + [theirs]
        delivery.ack_batch(consumer, events, {"gated"})
        assert all(m.acked for m in mine) and not shared.acked and shared.refcount == 1
        assert set(consumer._unacked_messages) == {shared}
        assert consumer._n_acked == 8 and waiter.done()
        assert theirs.acks == 1
        delivery.ack_batch(consumer, events[:3], {"gated"})  # acked already: nothing changes
        assert consumer._n_acked == 8 and all(m.refcount == 0 for m in mine)

    asyncio.run(run())
