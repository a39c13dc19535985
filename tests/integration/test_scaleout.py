"""Scale-out on one host with real processes: three `recstream worker`s split a 12-partition
interactions topic, and scaling 1 -> 3 -> 1 while events flow keeps every figure exact.

The workers run with one standby replica per table (`table_standby_replicas=1`). The hand-over is
measured from Redis' `progress:history` hash, which the history agent moves after every batch to the
last offset it applied per interactions partition (`recstream.devtools.devcluster.ProgressSampler`): sampled
every 25 ms, a partition's longest pause between two advances is how long it went unprocessed, and the
moment the last paused partition advanced again is when every partition was being processed again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable

from recstream.devtools.devcluster import Cluster, ProgressSampler, WorkerProcess, get

from .faults import produce, wait_committed, wait_exact, world_events
from .test_exactness import _reference, _wait_processing

PARTITIONS = 12
RATE = 1_000  # events/s: small enough that the test is about exactness, not speed, on 2 shared cores


def _owned(cluster: Cluster) -> list[int]:
    topic = f"{cluster.settings.topic_prefix}.interactions"
    return [get(w.url + "/health")[1].get("assigned_partitions", {}).get(topic, 0) for w in cluster.workers]


def _in_parallel(action: Callable[[], object], times: int) -> list[object]:
    out: list[object] = []
    threads = [threading.Thread(target=lambda: out.append(action())) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _stop(cluster: Cluster, workers: list[WorkerProcess]) -> None:
    """A graceful stop (SIGTERM: the worker leaves the group), two at once."""
    threads = [threading.Thread(target=w.stop) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        cluster.workers.remove(w)


def test_scale_1_3_1_while_events_flow(services, tmp_path) -> None:  # noqa: ANN001
    cluster = Cluster(
        services,
        tmp_path,
        redis_db=11,
        log_level="info",
        env={
            "RECSTREAM_INTERACTIONS_PARTITIONS": str(PARTITIONS),
            "RECSTREAM_COVISIT_PARTITIONS": str(PARTITIONS),
            "RECSTREAM_TABLE_STANDBY_REPLICAS": "1",
        },
    )
    stop = threading.Event()
    sent: list[int] = []
    try:
        first = cluster.start_worker()
        cluster.wait_settled()
        assert _owned(cluster) == [PARTITIONS]
        events = world_events(200_000, seed=13)  # far more than needed: the stream stops when told
        producer = threading.Thread(
            target=lambda: sent.append(asyncio.run(produce(cluster, events, RATE, stop))), daemon=True
        )
        with ProgressSampler(cluster.settings.redis_url, PARTITIONS) as sampler:
            producer.start()
            _wait_processing(cluster, first.url, 2 * RATE)

            t_up = time.monotonic()  # 1 -> 3: two workers start at once and join the group
            _in_parallel(cluster.start_worker, 2)
            cluster.wait_settled()
            owned = _owned(cluster)
            sampler.wait_all_advanced()
            up = sampler.handover(t_up, time.monotonic())
            assert sorted(owned) == [4, 4, 4], f"12 partitions not split evenly over three workers: {owned}"
            time.sleep(2)  # three workers process side by side

            t_down = time.monotonic()  # 3 -> 1: two workers leave (SIGTERM), the first takes over
            _stop(cluster, [w for w in cluster.workers if w is not first])
            cluster.wait_settled()
            assert _owned(cluster) == [PARTITIONS]
            sampler.wait_all_advanced()
            down = sampler.handover(t_down, time.monotonic())
            time.sleep(1)
            stop.set()
            producer.join(30)
        assert sent and sent[0] > 0 and not producer.is_alive()
        diffs = wait_exact(cluster, _reference(cluster, sent[0]), timeout=120)
        assert diffs == [], "\n".join(diffs)
        behind = wait_committed(cluster)  # every partition committed through its last event, by its owner
        assert behind == {}, f"interactions partitions not committed to their end offsets: {behind}"
        report = {
            "events": sent[0],
            "rate": RATE,
            "scale_up_1_to_3": up,
            "scale_down_3_to_1": down,
            "split": owned,
        }
        print("hand-over:", json.dumps(report))
        # Every partition was processed again, and not after an unbounded pause (Faust's rebalance timeout
        # is 20 s, the session timeout 10 s: a hand-over stuck on either would exceed this).
        for step in (up, down):
            assert step["pause_s"] < 30, report
    finally:
        stop.set()
        cluster.stop()
