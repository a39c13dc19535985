"""A fast path for the one place Faust's consumer hands each message to the agents.

`Consumer._drain_messages` delivers every message with `wait_first(callback(message),
suspend_flow.wait())`: four tasks and an `asyncio.wait` per message (~40 µs here), so that a rebalance
can abandon a delivery blocked on a full buffer. Almost every delivery does not block at all, so we run
the callback one step in place: if it finishes there, that is the whole delivery. If it blocks (a full
buffer, suspended flow), the rest of it runs exactly as Faust runs it, raced against the suspension.

That second half matters for exactness: after each delivery Faust records the message's offset as
read, and later drops re-fetched messages below it. A blocked delivery that finished only after a
rebalance's seek back to the committed offset would move that mark past messages never processed.

faust-streaming 0.15.3 (pinned); the exactness tests run through it.
"""

from __future__ import annotations

from collections.abc import Collection, Coroutine, Generator, Sequence
from typing import Any

from faust.types.tuples import ack_lock
from mode.utils.futures import notify


class _Resumed:
    """Awaiting this continues `coro`, which has already yielded `pending` to its first suspension."""

    def __init__(self, coro: Coroutine, pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.pending
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and errors go to where the callback waits
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _continue(coro: Coroutine, pending: Any) -> Any:
    return await _Resumed(coro, pending)


def install(consumer: Any) -> None:
    if consumer is None or getattr(consumer, "_recstream_fast_delivery", False):
        return
    original = consumer.wait_first
    suspend_flow = consumer.suspend_flow
    suspend_wait = type(suspend_flow).wait.__code__

    async def wait_first(*coros: Any, timeout: Any = None) -> Any:
        if (
            len(coros) == 2
            and timeout is None
            and getattr(coros[1], "cr_code", None) is suspend_wait
            and not suspend_flow.is_set()
        ):
            callback = coros[0]
            try:
                pending = callback.send(None)
            except StopIteration:  # delivered without blocking
                coros[1].close()  # never started: nothing to cancel
                return None  # _drain_messages ignores the result
            except BaseException:
                coros[1].close()
                raise
            return await original(_continue(callback, pending), coros[1], timeout=timeout)
        return await original(*coros, timeout=timeout)

    consumer.wait_first = wait_first
    consumer._recstream_fast_delivery = True


def forget_buffered(consumer: Any, revoked: set) -> None:
    """Forget the revoked partitions' "buffer full" marks, which Faust keeps across a rebalance.

    When an agent's queue is under pressure Faust takes the partition off the fetch list and marks it
    buffered; `getmany` still hands out a buffered partition's records, and when the queue drains
    `on_buffer_drop` puts the partition back on the list. Faust clears neither mark on revocation, so a
    partition that was buffered when a rebalance began comes back while its tables are still being
    recovered: its records reach the agent before the recovery has restored the state they apply to
    (events applied to a stale value, later skipped as applied), and a delivery blocked on that full
    queue holds the one fetcher that also brings the changelog records the recovery waits for. Called
    on every revocation; the partition is fetched again once recovery resumes it."""
    if consumer is not None:
        consumer._buffered_partitions.difference_update(revoked)


def limit_fetch_wait(consumer: Any, wait_ms: int) -> None:
    """Bound how long the broker may hold the worker's fetch request (Faust hard-codes 1,500 ms).

    aiokafka keeps one fetch in flight per broker, and leaves out of each request the partitions whose
    fetched records the agents have not taken yet. A request built while the interactions partitions
    still had records queued holds only the others (the catalog, changelogs, an internal topic that
    only the history agent writes), and with nothing new there the broker keeps it the whole wait: the
    interactions that arrived meanwhile waited ~1.5 s for the next request, and a user's event with
    them. A short wait costs an idle worker one small fetch round trip per `wait_ms`. Called for every
    batch (the consumer may be re-created); a no-op once set."""
    fetcher = getattr(getattr(getattr(consumer, "_thread", None), "_consumer", None), "_fetcher", None)
    if fetcher is not None and fetcher._fetch_max_wait_ms != wait_ms:
        fetcher._fetch_max_wait_ms = wait_ms


def ack_batch(consumer: Any, events: Sequence[Any], gated: Collection[str]) -> None:
    """`event.ack()` for every event of a batch; for the `gated` topics, whose commits
    `recstream.streaming.commits` decides, in one critical section: per event, Faust's ack takes its lock three times and files the
    offset in bookkeeping (`_acked`, `_acked_index`) that the commit gate ignores for these topics and
    trims again (~3 µs an event, 2-3 % of a worker's CPU). What the rest of Faust reads is kept: the
    message's refcount and `acked` flag, `_unacked_messages` (what a rebalance or shutdown waits on,
    woken here as Faust's ack wakes it) and `_n_acked` (its commit-every-N count)."""
    acked = 0
    with ack_lock:
        unacked = consumer._unacked_messages
        for event in events:
            message = event.message
            if message.topic not in gated:
                event.ack()  # Faust's bookkeeping decides its commits
                continue
            if message.acked:
                continue
            message.refcount = refcount = max(message.refcount - 1, 0)
            if refcount:
                continue  # another stream holds it too
            message.acked = True
            unacked.discard(message)
            acked += 1
        consumer._n_acked += acked
        notify(consumer._waiting_for_ack)
