"""The dashboard's per-second counters in Redis count every event of the log once, whatever the
history agent's batches hold.

A batch may hold an offset twice. After a rebalance, Faust's recovery resumes the flow ("Resuming
flow...") before it seeks the newly assigned partitions back to their committed offsets ("Seek stream
partitions to committed offsets."), in the same consumer generation: what was fetched in between is
delivered again, and `agents.common.take_batches` keeps both copies (the tables skip the second by their
applied offsets). `test_scaleout` over-counted `overview:*` and `vseries:*` that way about one run in
three (a worker's batch held partition 2's offset 3364 twice). Here the history agent's counter write
(`agents/history.py::_write_counters`: `Stores.add_counters` and its Lua script) gets such batches
directly, against a redis-server of the test's own, and Redis must equal the reference of the log.
"""

from __future__ import annotations

import redis

from recstream.devtools import reference
from recstream.records import Interaction
from recstream.serving.stores import Stores

from .faults import PrivateServer


def _log() -> dict[tuple[int, int], Interaction]:
    """Two partitions' events, all in one second and one 10 s video bucket, so a double shows."""
    ts = 1_796_137_756_000
    out: dict[tuple[int, int], Interaction] = {}
    for p in (0, 1):
        for o in range(10):
            kind = ("view", "like", "view", "skip", "view")[o % 5]
            out[(p, o)] = Interaction(
                type=kind,
                user_id=f"u{p}{o % 3}",
                video_id=f"v{o % 4}",
                ts=ts + 10 * o + p,
                watch_time_ms=4_000 + 100 * o if kind == "view" else None,
                duration_ms=5_000,
            )
    return out


async def test_a_batch_holding_an_offset_twice_is_counted_once(services, tmp_path) -> None:  # noqa: ANN001
    # History first: importing recstream.streaming.runtime first is a circular import, as in a worker.
    from recstream.agents import history  # noqa: I001
    from recstream.streaming import runtime

    log = _log()
    server = PrivateServer("redis", tmp_path / "redis")
    server.start()
    saved = runtime._stores
    runtime._stores = Stores(services.model_copy(update={"redis_url": server.url}))
    try:

        def batch(*offsets: tuple[int, int]) -> list[tuple[int, int, Interaction]]:
            return [(p, o, log[(p, o)]) for p, o in offsets]

        # 1: partition 0's 0..5, then a seek back to its committed offset 3 delivers 3..7 again; partition
        # 1's offset 3 twice in a row (as the scale-out test's worker got 3364).
        await history._write_counters(
            batch(
                *((0, o) for o in range(6)),
                (1, 0),
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 3),
                *((0, o) for o in range(3, 8)),
            )
        )
        # 2: the next batch re-reads from the committed offsets (already counted) and goes on.
        await history._write_counters(
            batch(*((0, o) for o in range(6, 10)), *((1, o) for o in range(2, 10)), (1, 9))
        )
        # 3: a whole batch again (a retried or replayed one): nothing to add.
        await history._write_counters(batch(*((0, o) for o in range(10))))

        ref = reference.compute(sorted((p, o, e) for (p, o), e in log.items()), history.PARAMS)
        client = redis.Redis.from_url(server.url)
        got = {key: {k.decode(): float(v) for k, v in client.hgetall(key).items()} for key in ref.counters}
        want = {key: {k: float(v) for k, v in fields.items()} for key, fields in ref.counters.items()}
        assert got == want
        assert got["overview:1796137756"]["view"] == 12  # the log's views, each once
        assert {int(p): int(o) for p, o in client.hgetall(history.PROGRESS_KEY).items()} == {0: 9, 1: 9}
        users = {e.user_id for e in log.values()}
        assert client.pfcount(f"active:{1_796_137_756_000 // 60_000}") == len(users)
        client.close()
    finally:
        await runtime._stores.close()
        runtime._stores = saved
        server.stop()
