"""Scale-out on one host: aggregate ingest with 1 and 2 `recstream worker`s, and the hand-over when a
worker leaves and joins, with and without standby replicas.

    .venv/bin/python benchmarks/scaleout.py --events 200000

For each configuration (1 worker; 2 workers; 2 workers with `table_standby_replicas=1`), in a fresh
environment (`streaming.BenchEnv`: a private redis-server, an isolated topic prefix, app id and MongoDB
database on the local Kafka and MongoDB):

1. the workers start on the empty topics (8 interactions partitions, the default) and settle (every
   partition owned, no rebalance running);
2. the pinned workload (`workload.py`: `--events`, Zipf 1.1, seed 42) is produced as fast as possible;
   the workers' `recstream_messages_processed_total` counters, summed over the workers, are polled
   every 0.25 s. Ingest ends when history and engagement processed every event and the co-visitation
   counter has not moved for 3 s; the rate is events / (end - first poll that saw work);
3. Redis is compared with the reference computed from the same events (`recstream.devtools.reference`): every
   history, per-video counter, window, trending rank and per-second counter must be equal. Neighbour
   lists of sources whose list was pruned (past 200 entries) may differ from the partition-order
   reference in which pairs survived pruning (see streaming.py); they are counted, not required;
4. with 2 workers, while a separate process produces 1,000 events/s: the second worker is stopped
   (SIGTERM: it leaves the group), then started again on the same port (its RocksDB kept). The hand-over
   is timed from Redis' `progress:history` (`recstream.devtools.devcluster.ProgressSampler`): the longest any
   partition went unprocessed, and the time from the change until every partition advanced again.

Results: benchmarks/results/scaleout.json (and the table printed). The load average is recorded at the
start and the end: two cores are shared by Kafka, Redis, MongoDB, the workers and the producer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import streaming  # noqa: E402  (benchmarks/streaming.py: the environment, the expected state)
import workload  # noqa: E402

from recstream.devtools import reference  # noqa: E402
from recstream.devtools.devcluster import Cluster, ProgressSampler, get  # noqa: E402
from recstream.kafka.admin import ensure_topics  # noqa: E402
from recstream.kafka.topics import topic_names  # noqa: E402
from recstream.records import now_ms  # noqa: E402

AGENTS = ("history", "engagement", "covisit")


class CounterPoller:
    """Polls every worker's /metrics every `interval` s: [(t, {agent: sum over the workers})]."""

    def __init__(self, urls: list[str], interval: float = 0.25) -> None:
        self.urls, self.interval = urls, interval
        self.series: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            total = dict.fromkeys(AGENTS, 0.0)
            for url in self.urls:
                text = get(url + "/metrics")[1].get("text", "")
                for agent, value in streaming.METRIC.findall(text):
                    if agent in total:
                        total[agent] += float(value)
            self.series.append(((t0 + time.monotonic()) / 2, total))
            time.sleep(max(0.0, self.interval - (time.monotonic() - t0)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def done(self, n: int, quiet_s: float) -> bool:
        if not self.series:
            return False
        t, last = self.series[-1]
        if last["history"] < n or last["engagement"] < n:
            return False
        moved = [
            t_
            for (t_, c), (_, c0) in zip(self.series[1:], self.series, strict=False)
            if c["covisit"] != c0["covisit"]
        ]
        return not moved or t - moved[-1] >= quiet_s


def _start_workers(cluster: Cluster, count: int) -> None:
    threads = [threading.Thread(target=cluster.start_worker) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _ingest(env: streaming.BenchEnv, poller: CounterPoller, timeout: float) -> dict[str, Any]:
    s, n = env.settings, env.cfg.events
    end_ms = now_ms()
    pids = [w.proc.pid for w in env.cluster.workers] if env.cluster is not None else []
    cpu0 = sum(streaming._cpu_seconds(pid) for pid in pids)
    t0 = time.monotonic()
    sent = asyncio.run(
        workload.produce(
            env.wcfg,
            s.kafka_bootstrap,
            topic_names(s).interactions,
            s.interactions_partitions,
            end_ms=end_ms,
            quiet=True,
        )
    )
    produced_s = time.monotonic() - t0
    deadline = time.monotonic() + timeout
    while not poller.done(n, quiet_s=3.0) and time.monotonic() < deadline:
        time.sleep(0.25)
    if not poller.done(n, quiet_s=3.0):
        return {"error": f"not done in {timeout:.0f} s: {poller.series[-1][1] if poller.series else None}"}
    # Less noisy than a rate on a shared host: the workers' CPU, from before the first event to the end
    # (the settle wait included: an idle worker's timers cost a little).
    cpu = sum(streaming._cpu_seconds(pid) for pid in pids) - cpu0
    series = poller.series
    t_first = next(t for t, c in series if c["history"] > 0)
    t_hist = next(t for t, c in series if c["history"] >= n)
    t_eng = next(t for t, c in series if c["engagement"] >= n)
    cov_total = series[-1][1]["covisit"]
    t_cov = next(t for t, c in series if c["covisit"] >= cov_total)
    t_end = max(t_hist, t_eng, t_cov)
    out = {
        "events": sent,
        "produced_s": round(produced_s, 2),
        "history_events_per_s": round(n / (t_hist - t_first)),
        "pipeline_events_per_s": round(n / (t_end - t_first)),
        "pipeline_seconds": round(t_end - t_first, 2),
        "covisit_pairs": int(cov_total),
        "workers_cpu_s": round(cpu, 1),
        "workers_cpu_us_per_event": round(cpu / n * 1e6, 1),
        "counted": {a: series[-1][1][a] for a in AGENTS},
    }
    say(
        f"  ingest: {out['pipeline_events_per_s']:,} events/s end to end (history {out['history_events_per_s']:,}/s; "
        f"workers' CPU {out['workers_cpu_us_per_event']} µs per event)"
    )
    streaming._expected_state(env, end_ms)  # env.reference, from the same events (checks the topic's offsets)
    client = redis.Redis.from_url(s.redis_url)
    diffs = reference.compare_redis(
        client, env.reference, env.params, limit=0, seen_bloom=(s.seen_bloom_bits, s.seen_bloom_hashes)
    )
    other = [d for d in diffs if not d.startswith("neighbours of ")]
    out["exact"] = {
        "differences_other_than_pruned_neighbour_lists": len(other),
        "examples": other[:3],
        "neighbour_lists_pruned_in_another_order": len(diffs) - len(other),
        "histories": len(env.reference.histories),
        "videos": len(env.reference.videos),
    }
    say(f"  exactness: {len(other)} differences (+{len(diffs) - len(other)} pruned neighbour lists)")
    return out


def _handover(env: streaming.BenchEnv, rate: float) -> dict[str, Any]:
    """The second worker leaves (SIGTERM) and joins again on its port while `rate` events/s flow."""
    cluster, s = env.cluster, env.settings
    assert cluster is not None and len(cluster.workers) == 2
    second = cluster.workers[1]
    out: dict[str, Any] = {"rate": rate}
    with (
        streaming.BackgroundLoad(env, rate) as load,
        ProgressSampler(s.redis_url, s.interactions_partitions) as sampler,
    ):
        time.sleep(3)
        sampler.wait_all_advanced()
        t0 = time.monotonic()
        second.stop()
        cluster.workers.remove(second)
        cluster.wait_settled(timeout=120)
        sampler.wait_all_advanced()
        out["leave"] = sampler.handover(t0, time.monotonic())
        say(f"  a worker leaves: {out['leave']}")
        time.sleep(2)
        t0 = time.monotonic()
        cluster.start_worker(second.port)  # same port: its RocksDB directory is kept
        t_started = time.monotonic()
        cluster.wait_settled(timeout=120)
        sampler.wait_all_advanced()
        out["join"] = {
            **sampler.handover(t_started, time.monotonic()),
            "process_start_s": round(t_started - t0, 2),
        }
        say(f"  it joins again: {out['join']}")
    out["background"] = load.result
    return out


def say(message: str) -> None:
    print(message, flush=True)


def run(workers: int, standby: int, args: argparse.Namespace) -> dict[str, Any]:
    cfg = streaming.BenchConfig(events=args.events, users=args.users, videos=args.videos, quix=False)
    say(f"{workers} worker(s), standby replicas {standby}: {args.events:,} events")
    result: dict[str, Any] = {"workers": workers, "standby_replicas": standby, "load_start": os.getloadavg()}
    with streaming.BenchEnv(cfg) as env:
        cluster = env.cluster
        assert cluster is not None
        cluster.env["RECSTREAM_TABLE_STANDBY_REPLICAS"] = str(standby)
        asyncio.run(ensure_topics(env.settings))
        streaming._faust_dirs(cluster)
        t0 = time.monotonic()
        _start_workers(cluster, workers)
        cluster.wait_settled(timeout=120)
        result["start_and_settle_s"] = round(time.monotonic() - t0, 1)
        topic = topic_names(env.settings).interactions
        result["partitions"] = [
            get(w.url + "/health")[1]["assigned_partitions"].get(topic, 0) for w in cluster.workers
        ]
        poller = CounterPoller([w.url for w in cluster.workers])
        poller.start()
        try:
            result["ingest"] = _ingest(env, poller, timeout=args.timeout)
        finally:
            poller.stop()
        if workers == 2 and args.handover_rate > 0:
            result["handover"] = _handover(env, args.handover_rate)
    result["load_end"] = os.getloadavg()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--videos", type=int, default=5_000)
    parser.add_argument(
        "--configs",
        default="1:0,2:0,2:1",
        help="workers:standby_replicas, comma-separated (default 1:0,2:0,2:1)",
    )
    parser.add_argument("--handover-rate", type=float, default=1_000, help="events/s during the hand-over")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaleout.json")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE.parent
    ).stdout.strip()
    runs = []
    for item in args.configs.split(","):
        workers, standby = (int(x) for x in item.split(":"))
        runs.append(run(workers, standby, args))
    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "workload": {
            "events": args.events,
            "users": args.users,
            "videos": args.videos,
            "zipf": 1.1,
            "seed": 42,
            "interactions_partitions": 8,
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    say("\n| workers | standby | ingest end to end | history stage | exact | leave pause | join pause |")
    say("|---|---|---|---|---|---|---|")
    for r in runs:
        ing, ho = r.get("ingest", {}), r.get("handover", {})
        say(
            f"| {r['workers']} | {r['standby_replicas']} | {ing.get('pipeline_events_per_s', '-')} | "
            f"{ing.get('history_events_per_s', '-')} | "
            f"{ing.get('exact', {}).get('differences_other_than_pruned_neighbour_lists', '-') == 0} | "
            f"{ho.get('leave', {}).get('pause_s', '-')} | {ho.get('join', {}).get('pause_s', '-')} |"
        )
    say(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
