"""A fast path for the one place Faust's consumer hands each message to the agents.

`Consumer._drain_messages` delivers every message with `wait_first(callback(message),
suspend_flow.wait())`: four tasks and an `asyncio.wait` per message (~40 µs here), so that a rebalance
can abandon a delivery blocked on a full buffer. While no rebalance is under way we await the callback
directly; a delivery that outlives the start of a rebalance is harmless because the agents drop events
of partitions the worker no longer holds (`agents.common.take_batches`). faust-streaming 0.15.3
(pinned); the exactness tests run through it.
"""

from __future__ import annotations

from typing import Any


def install(consumer: Any) -> None:
    if consumer is None or getattr(consumer, "_recstream_fast_delivery", False):
        return
    original = consumer.wait_first
    suspend_flow = consumer.suspend_flow
    suspend_wait = type(suspend_flow).wait.__code__

    async def wait_first(*coros: Any, timeout: Any = None) -> Any:
        if (len(coros) == 2 and timeout is None and getattr(coros[1], "cr_code", None) is suspend_wait
                and not suspend_flow.is_set()):
            coros[1].close()  # never started: nothing to cancel
            await coros[0]
            return None  # _drain_messages ignores the result
        return await original(*coros, timeout=timeout)

    consumer.wait_first = wait_first
    consumer._recstream_fast_delivery = True
