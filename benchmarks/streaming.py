"""The streaming benchmarks, each against a peer in the same run, on the pinned workload.

Everything runs against real processes on 127.0.0.1: the local Kafka broker and MongoDB, a private
`redis-server` started for the run (so flushing its DB can never touch another run's or a test's
data), and real `recstream worker` processes on an isolated topic prefix, app id and MongoDB database
(`recstream.devtools.devcluster.Cluster`). Nothing is mocked. The workload is `benchmarks/workload.py`'s
(1,000,000 events, 100,000 users, 20,000 videos, Zipf 1.1 by default), default settings throughout.

1. ingest: the catalog through a first worker; the workload produced once (`workload.produce`) and
   generated again here to compute the reference state (`recstream.devtools.reference.compute`, not timed).
   A fresh worker processes the backlog; its counters (`recstream_messages_processed_total`) are
   polled: history and engagement reach N, covisit (pairs, total not known in advance) stops moving.
   The run counts only if Redis then equals the reference (`reference.compare_redis` is empty).
   Peers on the same topic: `quix_peer.py` (the same work in quixstreams, its per-video counts
   checked against `workload.reference_counts` and recstream's video:stats) and a raw AIOKafkaConsumer.
2. http: GET /recommendations/{random user with a history} on the state ingest built, with wrk or an
   async Python client; peer: a bare aiohttp handler (the web role's own benchmark is serving.py).
3. freshness: while a separate process produces workload events at 5,000/s, one view at a time of a
   video in a user's current list; the time until that user's list no longer shows it and shows one
   "because you watched" it. Peer: the same event's Kafka delivery to a plain consumer.
4. burst: POST /events to `recstream web` (the write front a deployment publishes) from concurrent
   clients (batches of 500) for 10 s: accepted events/s, then the worker's
   catch-up; then 60,000 events POSTed at 3,000/s while a probe user's view of a new video every 0.5 s
   is timed until `hist:{probe}` in Redis holds it; then the catch-up after the burst.
5. replay: the workload as a KuaiRand CSV through `recstream replay --as-fast-as-possible` into a fresh
   cluster: time from the replay's start to fully materialised state (then checked like ingest).

Bounded: every loop stops after its count or its deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import redis
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from recstream import scoring
from recstream.devtools import reference
from recstream.devtools.devcluster import Cluster, delete_topics, free_port, wait_for
from recstream.kafka.batches import partition_for
from recstream.kafka.topics import topic_names
from recstream.records import Interaction, encode, now_ms
from recstream.redis_layout import EPOCH_KEY, TRENDING_KEY, VIDEO_STATS_KEY, history_key, neighbours_key
from recstream.settings import Settings, get_settings
from recstream.streamstate import (
    StreamParams,
    apply_runs,
    covisit_entries,
    new_history,
    new_neighbours,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import workload  # noqa: E402  (benchmarks/workload.py: the pinned workload)

METRIC = re.compile(r'^recstream_messages_processed_total\{agent="(\w+)"\} ([0-9.e+-]+)$', re.M)
DEAD = re.compile(r"^recstream_dead_letters_total\{[^}]*\} ([0-9.e+-]+)$", re.M)
HISTORY_POLL_S = 0.002
"""How often a freshness sample reads the user's history in Redis before it polls their list."""
GC = re.compile(r'^recstream_gc_seconds_total\{generation="(\d)"\} ([0-9.e+-]+)$', re.M)


@dataclass
class BenchConfig:
    events: int = 1_000_000
    """Events of the pinned workload produced and ingested (the state the later stages run on)."""
    users: int = 100_000
    videos: int = 20_000
    zipf: float = 1.1
    seed: int = 42
    catalog_age_days: float = 30.0
    """Videos were published uniformly over this many days before now."""
    metrics_poll_s: float = 1.0
    """How often the harness reads the worker's /metrics. Each read costs the measured worker ~4 ms (the
    exposition and consumer lag): at 0.25 s that was 1.7 % of its CPU in a 1,000,000-event ingest. Rates
    interpolate the moment a counter crossed its target, so a coarser poll does not round them."""
    worker_log_level: str = "info"
    """The production default. (At "warn", Faust's start-up spinner leaves the root logger at DEBUG.)"""
    quix: bool = True
    """Run the quixstreams peer (benchmarks/quix_peer.py) over the same topic."""
    http_duration_s: int = 10
    http_warmup_s: int = 2
    http_concurrency: int = 16
    http_k: int = 20
    load_generator: str = "auto"  # auto | wrk | python
    freshness_samples: int = 300
    freshness_timeout_s: float = 3.0
    freshness_poll_s: float = 0.005
    freshness_background_rate: float = 5_000.0
    """Workload events/s a separate process produces to the interactions topic during the samples."""
    freshness_via: str = "web"
    """Whose /recommendations the samples read: "web", a `recstream web` process (the read front a
    deployment publishes: no agents, so an answer never waits for a batch), or "worker", the worker's own
    views (each answer then waits its turn behind the agents in the worker's event loop)."""
    burst_seconds: float = 10.0
    burst_batch: int = 500
    burst_concurrency: int = 8
    burst_pregenerate_rate: float = 30_000.0
    """Distinct events generated for the POST burst: burst_seconds x this (reused beyond, and counted)."""
    paced_events: int = 60_000
    paced_rate: float = 3_000.0
    paced_batch: int = 300
    probe_interval_s: float = 0.5
    replay_events: int = 1_000_000
    replay_workers: tuple[int, ...] = (1, 2)
    """Worker processes of each replay run: one (the ingest rows' setting), then as many as this host
    has cores (a rebuild uses every worker a deployment has)."""
    stage_timeout_s: float = 900.0
    """Bound of the HTTP, freshness and burst stages and of each raw consumer pass."""
    ingest_timeout_s: float = 3600.0
    """Bound of the worker's ingest and of the replay."""
    quix_timeout_s: float = 600.0
    """Bound of the quixstreams peer; past it, it is stopped and its rate reported as an upper bound."""
    stall_s: float = 60.0
    """Ingest fails when no counter moved for this long."""
    profile: bool = False
    py_spy: str | None = None
    keep: bool = False
    stages: tuple[str, ...] = ("http", "freshness", "burst", "replay")
    """Stages after ingest (which always runs: it builds the state the others use)."""


def say(message: str) -> None:
    """One progress line per stage (stderr, so stdout stays the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


# --------------------------------------------------------------------------------------------------
# The environment: private Redis, isolated cluster, cleanup
# --------------------------------------------------------------------------------------------------
class PrivateRedis:
    """A redis-server of our own on a free loopback port, configured like `recstream services` (AOF
    every second), in a temporary directory."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.home),
                "--daemonize",
                "no",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--logfile",
                str(self.home / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"private redis-server did not start; see {self.home / 'redis.log'}")

    def version(self) -> str:
        return redis.Redis(port=self.port).info("server")["redis_version"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class BenchEnv:
    """Private Redis + an isolated Cluster (own topics, app id, MongoDB database, data dir)."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.root = Path(tempfile.mkdtemp(prefix="recstream-bench-"))
        self.redis = PrivateRedis(self.root / "redis")
        self.cluster: Cluster | None = None
        self.post_url: str | None = None
        """Where the burst stage POSTs events (a `recstream web` process), once it started one."""
        self._web: Any = None  # the `recstream web` process of `read_url`, started on first use
        self.extra_clusters: list[Cluster] = []
        self.wcfg = workload.WorkloadConfig(
            events=cfg.events, users=cfg.users, videos=cfg.videos, zipf=cfg.zipf, seed=cfg.seed
        )
        self.world = workload.world(self.wcfg)
        self.users_with_history: list[str] = []
        self.reference: reference.Reference | None = None
        self.reference_counts: dict[str, dict[str, float]] = {}
        self.expected_pairs: tuple[int, int] = (0, 0)
        self.counted: dict[str, int] = {}
        self.port = free_port()
        self.profiles: dict[str, Any] = {}

    def read_url(self, via: str) -> str:
        """Where a stage reads /recommendations: the worker's own views ("worker") or a `recstream web`
        process of the same cluster ("web"), started the first time one is asked for."""
        assert self.cluster is not None
        if via == "worker":
            return self.url
        if via != "web":
            raise ValueError(f"read via 'web' or 'worker', not {via!r}")
        if self._web is None:
            self._web = self.cluster.start_web(processes=1)
        return self._web.url

    def __enter__(self) -> BenchEnv:
        self.redis.start()
        base = get_settings().model_copy(update={"redis_url": self.redis.url})
        self.cluster = Cluster(base, self.root / "data", redis_db=0, log_level=self.cfg.worker_log_level)
        _faust_dirs(self.cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def settings(self) -> Settings:
        assert self.cluster is not None
        return self.cluster.settings

    @property
    def params(self) -> StreamParams:
        return StreamParams.from_settings(self.settings)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pid(self) -> int | None:
        assert self.cluster is not None
        live = [w for w in self.cluster.workers if w.proc and w.proc.poll() is None]
        return live[-1].proc.pid if live else None

    def close(self) -> None:
        for cluster in [c for c in (self.cluster, *self.extra_clusters) if c is not None]:
            cluster.stop()
            if not self.cfg.keep:
                with contextlib.suppress(Exception):
                    asyncio.run(delete_topics(cluster.settings))
                with contextlib.suppress(Exception):
                    import pymongo

                    client = pymongo.MongoClient(cluster.settings.mongo_url, serverSelectionTimeoutMS=3000)
                    client.drop_database(cluster.settings.mongo_db)
                    client.close()
        self.redis.stop()
        if self.cfg.keep:
            say(f"kept {self.root} and the topics {self.settings.topic_prefix}.*")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def _faust_dirs(cluster: Cluster) -> None:
    """Create the workers' Faust data directory's parents (`{data_dir}/faust/{app_id}`): the worker
    creates only `{data_dir}/faust` and Faust then fails its own mkdir of `.../{app_id}/worker-{port}`
    on a fresh data dir (recstream/streaming/app.py)."""
    (cluster.settings.data_dir / "faust" / cluster.settings.app_id).mkdir(parents=True, exist_ok=True)


async def _metrics(http: aiohttp.ClientSession, url: str) -> tuple[float, dict[str, float]]:
    """(the request's mid-point time, {agent: messages processed, "dead_letters": n})."""
    t0 = time.perf_counter()
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    t = (t0 + time.perf_counter()) / 2
    counts = {agent: float(v) for agent, v in METRIC.findall(text)}
    counts["dead_letters"] = sum(float(v) for v in DEAD.findall(text))
    # The worker's garbage collector, all generations: its pauses show in a profile as the lines that
    # happened to allocate when a collection began.
    for generation, seconds in GC.findall(text):
        counts[f"gc{generation}_s"] = float(seconds)
    counts["gc_s"] = sum(counts.get(f"gc{g}_s", 0.0) for g in range(3))
    return t, counts


async def _metrics_sum(http: aiohttp.ClientSession, urls: list[str]) -> tuple[float, dict[str, float]]:
    """`_metrics` of each worker of a cluster, added up (the mean of the requests' times)."""
    got = [await _metrics(http, url) for url in urls]
    total: dict[str, float] = Counter()
    for _t, counts in got:
        total.update(counts)
    return sum(t for t, _c in got) / len(got), dict(total)


async def _wait_counter(url: str, agent: str, target: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            _, c = await _metrics(http, url)
            if c.get(agent, 0) >= target:
                return True
            await asyncio.sleep(0.2)
    return False


# --------------------------------------------------------------------------------------------------
# Profiling (py-spy, optional)
# --------------------------------------------------------------------------------------------------
def find_py_spy(explicit: str | None) -> str | None:
    for candidate in (explicit, shutil.which("py-spy"), str(Path(sys.executable).parent / "py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Profiler:
    """`py-spy record` attached to a worker for the life of a `with` block (raw collapsed stacks)."""

    def __init__(self, env: BenchEnv, name: str, pid: int | None = None) -> None:
        self.env, self.name, self.pid = env, name, pid
        self.binary = find_py_spy(env.cfg.py_spy) if env.cfg.profile else None
        self.out = env.root / f"profile-{name}.txt"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        pid = self.pid or self.env.worker_pid()
        if self.binary and pid:
            self.proc = subprocess.Popen(
                # --gil: only samples where a thread holds the GIL, i.e. Python CPU time, not idle waits.
                # --nonblocking: without it py-spy stops the worker for every sample, which halved its
                # rate at 1,000,000 events (and so changed what the profile shows).
                [
                    self.binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "100",
                    "--gil",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(self.out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            time.sleep(0.5)  # attached before the work starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            err = b""
        if self.out.exists():
            self.env.profiles[self.name] = summarise_profile(self.out.read_text())
        else:
            self.env.profiles[self.name] = {"error": (err or b"").decode(errors="replace")[-500:]}


CATEGORIES = [  # by the leaf frame's file (py-spy prints it relative to sys.path); first match wins
    ("pydantic (parse, validate, serialise)", ("pydantic",)),
    ("json (stdlib)", ("json/",)),
    ("Faust tables + RocksDB store", ("rocksdict", "faust/stores/", "faust/tables/")),
    ("aiokafka (consumer, producer, protocol)", ("aiokafka/", "kafka/")),
    ("Faust (streams, agents, channels, topics, producer buffer)", ("faust/",)),
    ("mode (Faust's service framework)", ("mode/",)),
    ("redis client", ("redis/", "hiredis")),
    ("pymongo", ("pymongo/", "bson/")),
    ("prometheus_client", ("prometheus_client/",)),
    ("aiohttp, yarl, multidict", ("aiohttp/", "yarl/", "multidict/")),
    ("recstream (agents, scoring, stores, recommend, views)", ("recstream/", "agents/", "tables/", "web/")),
    ("asyncio event loop", ("asyncio/",)),
    ("logging", ("logging/",)),
    ("threads, selectors", ("threading.py", "selectors.py", "concurrent/", "queue.py")),
]


def _category(path: str) -> str:
    short = _short(path).lstrip("/")
    return next((c for c, prefixes in CATEGORIES if short.startswith(prefixes)), "other")


def _frame(frame: str) -> tuple[str, str]:
    """'name (path:line)' -> (name, path)."""
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    return (m.group(1), m.group(2)) if m else (frame, "")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


FOCUS = ("process (agents/", "recommend (recstream/serving/recommend.py)", "ProducerBuffer._handle_pending (")


def summarise_profile(raw: str, top: int = 25) -> dict[str, Any]:
    """From py-spy's collapsed stacks: self and inclusive shares per function (the framework frames
    that sit under everything left out), self share per component, and what each agent's `process`
    (and serving's `recommend`) spends its time in."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    category: Counter[str] = Counter()
    children: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        names = [f"{name} ({_short(path)})" for name, path in frames]
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
        for i, name in enumerate(names):
            if name.startswith(FOCUS):
                child = names[i + 1] if i + 1 < len(names) else "(itself)"
                children.setdefault(name, Counter())[child] += n
                break
        category[_category(frames[-1][1])] += n
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str], limit: int = top) -> list[list]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(limit)]

    return {
        "samples": total,
        "component_self_pct": share(category),
        "self_pct": share(own),
        "inclusive_pct": share(Counter({k: v for k, v in inclusive.items() if v < 0.9 * total})),
        "breakdown_pct": {
            name: {"total": round(100 * sum(c.values()) / total, 1), "children": share(c, 8)}
            for name, c in sorted(children.items(), key=lambda kv: -sum(kv[1].values()))
        },
    }


# --------------------------------------------------------------------------------------------------
# Exactness of the neighbour lists, in the order the pipeline applied the pairs
# --------------------------------------------------------------------------------------------------
# `scoring.add_pair` prunes a source's map to its best `top_k` when it reaches 2 x top_k entries, so a
# popular source's list depends on the ORDER of its pairs. The live covisit partition interleaves
# pairs from several interactions partitions in whatever order the history agent's batches took them;
# `reference.compute` applies them partition by partition. So the strict `compare_redis` can differ on
# such lists without anything being lost or doubled. The check below splits the question in two, each
# exact: (1) the multiset of pair entries in the covisit topic is exactly the one the events imply
# (order-free hash + count); (2) the neighbour state rebuilt by applying the topic's entries in their
# log order (with the agent's de-duplication) equals Redis's lists.
MASK = (1 << 64) - 1


def _pair_digest(located: Iterable[tuple[int, int, Interaction]], params: StreamParams) -> tuple[int, int]:
    """(count, order-free hash) of the co-visitation entries the events imply, as the history agent
    applies them, one pair at a time: (src, dst, weight, ts, partition, position)."""
    histories: dict[str, dict[str, Any]] = {}
    count = digest = 0
    for p, o, e in located:
        state = histories.get(e.user_id) or histories.setdefault(e.user_id, new_history())
        weight = scoring.engagement_weight(e, params.engagement)
        for src, dst, w, position in covisit_entries(state, e.video_id, e.ts, weight, o, params):
            count += 1
            digest = (digest + hash((src, dst, w, e.ts, p, position))) & MASK
    return count, digest


async def _covisit_log_state(settings: Settings, params: StreamParams, timeout: float) -> dict[str, Any]:
    """The covisit topic read in log order: its entries' (count, hash), and the neighbour state built by
    applying them as the covisit agent does (skipping what a source has already applied)."""
    topic = topic_names(settings).covisit
    parts = [TopicPartition(topic, c) for c in range(settings.covisit_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    states: dict[str, dict[str, Any]] = {}
    count = digest = 0
    try:
        ends = await consumer.end_offsets(parts)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        pos = {tp: 0 for tp in parts}
        deadline = time.monotonic() + timeout
        while any(pos[tp] < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=500, max_records=2000)).items():
                for m in msgs:  # each partition's messages in offset order
                    pos[tp] = m.offset + 1
                    for src, runs in msgspec.msgpack.decode(m.value):  # one source's pairs from one batch
                        for p, ts, first, dsts, ws in runs:
                            for k, (dst, w) in enumerate(zip(dsts, ws, strict=True)):
                                count += 1
                                digest = (digest + hash((src, dst, w, ts, p, first + k))) & MASK
                        state = states.get(src) or states.setdefault(src, new_neighbours())
                        apply_runs(state, runs, params)  # as the covisit agent applies them
        complete = all(pos[tp] >= ends[tp] for tp in parts)
    finally:
        await consumer.stop()
    return {"count": count, "digest": digest, "states": states, "complete": complete}


def _neighbours_in_log_order(
    settings: Settings, params: StreamParams, expected: tuple[int, int], timeout: float
) -> dict[str, Any]:
    log = asyncio.run(_covisit_log_state(settings, params, timeout))
    client = redis.Redis.from_url(settings.redis_url)
    diffs: list[str] = []
    try:
        sources = sorted(log["states"])
        stored = client.mget([f"nbrs:{s}" for s in sources]) if sources else []
        for src, raw in zip(sources, stored, strict=True):
            got = dict(orjson.loads(raw)) if raw else {}
            if not reference.is_best_cut(got, log["states"][src]["n"], params.neighbours_materialised):
                want = scoring.normalised_top(log["states"][src]["n"], params.neighbours_materialised)
                diffs.append(f"neighbours of {src} (log order): {str(got)[:150]} != {str(want)[:150]}")
    finally:
        client.close()
    same_pairs = (log["count"], log["digest"]) == expected
    return {
        "pairs_in_topic": log["count"],
        "pairs_implied_by_events": expected[0],
        "pair_multiset_equal": same_pairs,
        "topic_read_completely": log["complete"],
        "sources": len(log["states"]),
        "lists_differing_from_log_order": len(diffs),
        "diffs": diffs[:5],
        "exact": same_pairs and log["complete"] and not diffs,
    }


# --------------------------------------------------------------------------------------------------
# 1. ingest
# --------------------------------------------------------------------------------------------------
async def _produce_catalog(env: BenchEnv, settings: Settings | None = None) -> None:
    from recstream.producers.publish import Publisher

    # Published over the last `catalog_age_days` (uniformly, seeded), so "fresh" (< 24 h) is a small
    # share of the catalog as on a real platform, not all of it.
    rng = random.Random(env.cfg.seed)
    now, span = now_ms(), int(env.cfg.catalog_age_days * 86_400_000)
    async with Publisher(settings or env.settings) as publisher:
        for video in env.world.catalog(created_at=now):
            await publisher.video(video.model_copy(update={"created_at": now - rng.randrange(span)}))


async def _end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


def _expected_state(env: BenchEnv, end_ms: int) -> dict[str, Any]:
    """The pinned workload generated again (the same events: it depends on the seed and end_ms only),
    each with the partition and offset it got on the fresh topic; from it the reference state
    (`recstream.devtools.reference.compute`) and the per-video lifetime counts (`workload.reference_counts`)."""
    s = env.settings
    parts = s.interactions_partitions
    partition_of: dict[str, int] = {}
    offsets: dict[int, int] = {}
    events = list(workload.generate(env.wcfg, end_ms))

    def located() -> Iterator[tuple[int, int, Interaction]]:
        for e in events:
            p = partition_of.get(e.user_id)
            if p is None:
                p = partition_of[e.user_id] = partition_for(e.user_id.encode(), parts)
            o = offsets.get(p, 0)
            offsets[p] = o + 1
            yield p, o, e

    triples = list(located())
    # Millions of long-lived objects: at CPython's default thresholds, full collections walk them again
    # and again (most of the reference's time), and later would pause the latency probes of this process.
    threshold = gc.get_threshold()
    gc.set_threshold(100_000, *threshold[1:])
    env.reference = reference.compute(triples, env.params)
    env.expected_pairs = _pair_digest(triples, env.params)
    del triples
    env.reference_counts = workload.reference_counts(events)
    topic = topic_names(s).interactions
    ends = asyncio.run(_end_offsets(s, topic, parts))
    if ends != {p: offsets.get(p, 0) for p in range(parts)}:
        raise RuntimeError(f"{topic} holds {ends}, the regenerated workload {offsets}: not the same events")
    env.users_with_history = sorted(u for u, h in env.reference.histories.items() if h["h"])
    types = Counter(e.type for e in events)
    gc.set_threshold(*threshold)
    gc.collect()
    gc.freeze()
    return {"users": len(partition_of), "videos": len(env.reference.videos), "by_type": dict(types)}


async def _raw_consume(settings: Settings, n: int, validate: bool, timeout: float) -> dict[str, Any]:
    """Read the whole interactions topic with a plain AIOKafkaConsumer (assigned, from the start)."""
    topic = topic_names(settings).interactions
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.interactions_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        for tp in parts:  # resolve the start offsets now: start-up, not consumption
            await consumer.position(tp)
        count, t_last = 0, None
        deadline = time.monotonic() + timeout
        t_first = time.perf_counter()  # from the first fetch to the last message in hand
        while count < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for msgs in batches.values():
                if validate:
                    for m in msgs:
                        Interaction.model_validate_json(m.value)
                count += len(msgs)
            t_last = time.perf_counter()
        if count < n or t_last is None:
            return {"error": f"read {count} of {n} before the deadline"}
        return {
            "messages": count,
            "seconds": r(t_last - t_first, 3),
            "events_per_s": r(count / (t_last - t_first), 0),
        }
    finally:
        await consumer.stop()


def _crossing(series: list[tuple[float, float]], target: float) -> float | None:
    """Interpolated time at which a polled counter reached `target`."""
    prev = None
    for t, v in series:
        if v >= target:
            if prev is None or v == prev[1]:
                return t
            (t0, v0) = prev
            return t0 + (target - v0) / (v - v0) * (t - t0)
        prev = (t, v)
    return None


AGENTS = ("history", "engagement", "covisit")


async def _counters(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        return (await _metrics(http, url))[1]


async def _watch_counters(
    cfg: BenchConfig,
    url: str | list[str],
    target: Callable[[], int | None],
    timeout: float,
    base: dict[str, float] | None = None,
    label: str = "ingest",
    settle_s: float = 2.0,
    pairs: int | None = None,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """Poll GET /metrics until the history and engagement counters (minus `base`) reach `target()` and
    the covisit counter reaches `pairs` when that is known (the reference counted them), else has not
    moved for `settle_s` since (the co-visitation agent can pause longer than that under a backlog).
    Returns the series and the (interpolated) moments each stage completed; bounded by `timeout` and
    by `cfg.stall_s` without any counter moving.

    With `redis_url`, the run ends when what serving reads in Redis has stopped changing too
    (`_redis_settled`), not when the counters say so: the agents write it on their own timers, seconds
    after they counted an event under a backlog. `t_end` is then the later of the two."""
    if redis_url is None:
        return await _watch(cfg, url, target, timeout, base, label, settle_s, pairs, None, None)
    async with _WriteClock(redis_url) as clock:
        return await _watch(cfg, url, target, timeout, base, label, settle_s, pairs, redis_url, clock)


async def _watch(
    cfg: BenchConfig,
    url: str | list[str],
    target: Callable[[], int | None],
    timeout: float,
    base: dict[str, float] | None,
    label: str,
    settle_s: float,
    pairs: int | None,
    redis_url: str | None,
    clock: _WriteClock | None,
) -> dict[str, Any]:
    base = base or {}
    series: list[tuple[float, dict[str, float]]] = []
    deadline = time.monotonic() + timeout
    next_line = time.monotonic() + 15
    last_change, last_counts = time.monotonic(), None
    cov_changed_at: float | None = None
    complete_at: float | None = None
    n: int | None = None
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            t, raw = await _metrics_sum(http, [url] if isinstance(url, str) else url)
            c = {a: raw.get(a, 0.0) - base.get(a, 0.0) for a in AGENTS}
            c["dead_letters"] = raw.get("dead_letters", 0.0) - base.get("dead_letters", 0.0)
            if series and c["covisit"] != series[-1][1]["covisit"]:
                cov_changed_at = t
            series.append((t, c))
            n = target()
            if c != last_counts:
                last_change, last_counts = time.monotonic(), c
            elif time.monotonic() - last_change > cfg.stall_s and n is not None:
                break  # nothing moved for stall_s: stuck (reported below)
            if n is not None and c["history"] >= n and c["engagement"] >= n:
                complete_at = complete_at or t
                if pairs is not None:
                    if c["covisit"] >= pairs:
                        break
                elif t - max(complete_at, cov_changed_at or 0.0) >= settle_s:
                    break
            else:
                complete_at = None
            if time.monotonic() > next_line:
                next_line += 15
                say(
                    f"  {label}: history {c['history']:,.0f} / engagement {c['engagement']:,.0f} of "
                    f"{'?' if n is None else f'{n:,}'} events, covisit {c['covisit']:,.0f} pairs"
                )
            await asyncio.sleep(cfg.metrics_poll_s)
    last = series[-1][1] if series else {}
    gc = (
        {k: r(raw.get(k, 0.0) - base.get(k, 0.0), 2) for k in ("gc_s", "gc0_s", "gc1_s", "gc2_s")}
        if series
        else {}
    )
    if n is None or complete_at is None:
        return {
            "error": f"{label} not done (deadline {timeout:.0f} s, or no progress for {cfg.stall_s:.0f} s): "
            f"{last}, target {n}",
            "series": series,
        }

    def col(agent: str) -> list[tuple[float, float]]:
        return [(t, c[agent]) for t, c in series]

    cov_total = last["covisit"]
    t_hist, t_eng = _crossing(col("history"), n), _crossing(col("engagement"), n)
    t_cov = _crossing(col("covisit"), cov_total) if cov_total else t_hist
    assert t_hist is not None and t_eng is not None and t_cov is not None
    t_counted = max(t_hist, t_eng, t_cov)
    settled: dict[str, Any] = {}
    if redis_url is not None:
        settled = await _redis_settled(redis_url, max(1.0, deadline - time.monotonic()), clock)
        if "error" in settled:
            return {"error": f"{label}: {settled['error']}", "series": series}
    t_redis = settled.get("t_last_change", t_counted)
    return {
        "n": n,
        "series": series,
        "t_history": t_hist,
        "t_engagement": t_eng,
        "t_covisit": t_cov,
        "t_counted": t_counted,
        "t_end": max(t_counted, t_redis),
        "redis_after_counters_s": r(max(0.0, t_redis - t_counted), 2) if settled else None,
        "redis_polls": settled.get("polls"),
        # The same dated to the end of the first full read that saw the final value (before the write
        # clock, every run's end was dated so).
        "redis_seen_after_counters_s": r(max(0.0, settled["t_first_poll_seen"] - t_counted), 2)
        if settled
        else None,
        "covisit_pairs": int(cov_total),
        "dead_letters": last.get("dead_letters", 0),
        "polls": len(series),
        "gc_s": gc.get("gc_s"),
        "gc_by_generation_s": [gc.get(f"gc{g}_s") for g in range(3)],
    }


REDIS_QUIET_S = 6.0
"""How long what serving reads must stay unchanged to count as settled: longer than the agents'
spaced writes at the end of a backlog (neighbour lists every >= 1 s, a write's time x 9 under load)."""


class _WriteClock:
    """When the benchmark's Redis last took a write: its count of changes (INFO's
    `rdb_changes_since_last_save`; the private server never saves, so the count only grows), read every
    WRITE_CLOCK_S, each change dated to the read that saw it. A full read of every view takes ~2 s
    with a million events' state, and dating the final value to the end of the read that first saw it
    added that much to every run."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.changes: list[float] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> _WriteClock:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        client = redis.asyncio.Redis.from_url(self.redis_url)
        last = None
        try:
            while True:
                count = (await client.info("persistence"))["rdb_changes_since_last_save"]
                if count != last:
                    last = count
                    self.changes.append(time.perf_counter())
                await asyncio.sleep(WRITE_CLOCK_S)
        finally:
            await client.aclose()

    def last_write_by(self, t: float) -> float | None:
        """The latest change seen at or before `t` (perf_counter), if any."""
        return next((c for c in reversed(self.changes) if c <= t), None)


WRITE_CLOCK_S = 0.05


async def _redis_settled(redis_url: str, timeout: float, clock: _WriteClock | None = None) -> dict[str, Any]:
    """The moment the downstream agents' Redis views (video stats, trending, neighbour lists) took their
    final value: polled until unchanged for REDIS_QUIET_S. The first poll that saw it ended after the
    value was in place, and so did the last write Redis took before that poll ended: with `clock`, the
    moment is that write (dated within WRITE_CLOCK_S; a write to anything else only makes it later),
    else the poll's end. That the final value equals the reference is `_exactness`'s check; histories
    and the dashboard counters are written before the history counter moves."""
    client = redis.asyncio.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    last, first_seen, polls = None, 0.0, 0
    try:
        while time.monotonic() < deadline:
            digest = hashlib.blake2b()
            for field, value in sorted((await client.hgetall(VIDEO_STATS_KEY)).items()):
                digest.update(field + b"=" + value + b";")
            for member, score in await client.zrange(TRENDING_KEY, 0, -1, withscores=True):
                digest.update(member + repr(score).encode())
            keys = sorted([k async for k in client.scan_iter(match=neighbours_key("*"), count=10_000)])
            for i in range(0, len(keys), 5_000):
                for key, value in zip(
                    keys[i : i + 5_000], await client.mget(keys[i : i + 5_000]), strict=True
                ):
                    digest.update(key + b"=" + (value or b"") + b";")
            t = time.perf_counter()
            polls += 1
            if digest.digest() != last:
                last, first_seen = digest.digest(), t
            elif t - first_seen >= REDIS_QUIET_S:
                written = clock.last_write_by(first_seen) if clock is not None else None
                return {
                    "t_last_change": first_seen if written is None else written,
                    "t_first_poll_seen": first_seen,
                    "polls": polls,
                }
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
    return {"error": f"Redis still changing after {timeout:.0f} s"}


def _rates(w: dict[str, Any]) -> dict[str, Any]:
    """Rates of a pre-produced backlog: from the first poll that sees work done (start-up and that
    first batch excluded) to the moment each stage completed."""
    n, series = w["n"], w["series"]
    hist = [(t, c["history"]) for t, c in series]
    started = next(((t, v) for t, v in hist if v > 0), None)
    assert started is not None
    t_first, n_first = started
    if w["t_history"] <= t_first:
        return {"error": f"finished before the second poll: use more events than {n}"}
    t10, t90 = _crossing(hist, 0.1 * n), _crossing(hist, 0.9 * n)
    return {
        "history_events_per_s": r((n - n_first) / (w["t_history"] - t_first), 0),
        "pipeline_events_per_s": r((n - n_first) / (w["t_end"] - t_first), 0),
        "history_steady_events_per_s": r(0.8 * n / (t90 - t10), 0) if t90 and t10 and t90 > t10 else None,
        "history_seconds": r(w["t_history"] - t_first, 3),
        "pipeline_seconds": r(w["t_end"] - t_first, 3),
        "engagement_lag_s": r(w["t_engagement"] - w["t_history"], 3),
        "covisit_lag_s": r(w["t_covisit"] - w["t_history"], 3),
        "redis_after_counters_s": w.get("redis_after_counters_s"),
        "covisit_pairs": w["covisit_pairs"],
        "dead_letters": w["dead_letters"],
        "gc_s": w.get("gc_s"),
        "gc_by_generation_s": w.get("gc_by_generation_s"),
        "polls": w["polls"],
        "excluded_first_batch": n_first,
    }


def _seen_bloom(settings: Settings) -> tuple[int, int]:
    return settings.seen_bloom_bits, settings.seen_bloom_hashes


def _exactness(
    settings: Settings,
    ref: reference.Reference,
    params: StreamParams,
    expected_pairs: tuple[int, int],
    label: str,
    timeout: float,
) -> dict[str, Any]:
    """`reference.compare_redis` (when it differs on more than the neighbour lists: once more 5 s later,
    late vs. wrong), and the neighbour lists checked in the pipeline's own pair order (see above)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        t0 = time.perf_counter()
        diffs = reference.compare_redis(client, ref, params, limit=0, seen_bloom=_seen_bloom(settings))
        other = [d for d in diffs if not d.startswith("neighbours of ")]
        out: dict[str, Any] = {
            "compare_redis_empty": not diffs,
            "compare_redis_diffs": len(diffs),
            "neighbour_lists_unlike_partition_order_reference": len(diffs) - len(other),
            "neighbour_examples": [d[:300] for d in diffs if d.startswith("neighbours of ")][:3],
        }
        if other:
            time.sleep(5)
            later = [
                d
                for d in reference.compare_redis(
                    client, ref, params, limit=0, seen_bloom=_seen_bloom(settings)
                )
                if not d.startswith("neighbours of ")
            ]
            out.update(
                diffs=[d[:300] for d in other[:10]],
                other_diffs_5s_later=len(later),
                diffs_5s_later=[d[:300] for d in later[:5]],
            )
    finally:
        client.close()
    out["log_order"] = _neighbours_in_log_order(settings, params, expected_pairs, timeout)
    out["exact"] = not other and out["log_order"]["exact"]
    out["check_s"] = r(time.perf_counter() - t0, 1)
    out["checked"] = (
        f"{len(ref.histories):,} histories, {len(ref.videos):,} videos, {len(ref.neighbours):,} "
        f"neighbour lists, {len(ref.counters):,} counter hashes"
    )
    lo = out["log_order"]
    if out["exact"]:
        say(
            f"  {label}: Redis is exact ({out['checked']}; {lo['pairs_in_topic']:,} pairs, the multiset the "
            f"events imply; checked in {out['check_s']} s); compare_redis: {len(diffs)} differences, all "
            f"neighbour lists of popular sources pruned in another pair order"
        )
    else:
        say(
            f"  !!! {label}: REDIS IS NOT EXACT: {[d[:200] for d in other[:3]]}; 5 s later "
            f"{out.get('other_diffs_5s_later')} differences {out.get('diffs_5s_later', [])[:2]}; log order: "
            f"{ {k: v for k, v in lo.items() if k != 'diffs'} } {[d[:200] for d in lo['diffs'][:2]]}"
        )
    return out


async def _messages_per_event(settings: Settings, n: int) -> dict[str, float]:
    """Messages now in each of this run's topics (changelogs included), per ingested event: what the
    pipeline writes to Kafka for every event it reads. (The catalog's own writes are left out.)"""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        tags = (settings.topic_prefix + ".", settings.app_id + "-")
        described = await admin.describe_topics([t for t in await admin.list_topics() if t.startswith(tags)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    out: dict[str, float] = {}
    try:
        for d in described:
            parts = [TopicPartition(d["topic"], p["partition"]) for p in d["partitions"]]
            total = sum((await consumer.end_offsets(parts)).values()) if parts else 0
            name = d["topic"].removeprefix(settings.topic_prefix + ".").removeprefix(settings.app_id + "-")
            if total and name not in ("interactions", "videos", "catalog-changelog"):
                out[name] = round(total / n, 4)
    finally:
        await consumer.stop()
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]))
    out["total"] = round(sum(out.values()), 4)
    return out


def _quix_peer(env: BenchEnv, n: int) -> dict[str, Any]:
    """benchmarks/quix_peer.py over the same interactions topic, in its own process; its per-video
    lifetime counts checked against `workload.reference_counts` and recstream's video:stats docs."""
    s = env.settings
    counts_file = env.root / "quix-counts.json"
    cmd = [
        sys.executable,
        str(HERE / "quix_peer.py"),
        "--bootstrap",
        s.kafka_bootstrap,
        "--topic",
        topic_names(s).interactions,
        "--events",
        str(n),
        "--state-dir",
        str(env.root / "quix-state"),
        "--counts-out",
        str(counts_file),
    ]
    log = env.root / "quix-peer.log"
    timeout = env.cfg.quix_timeout_s
    started = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: it stops and deletes its repartition and changelog topics
            try:
                stdout, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
    elapsed = time.perf_counter() - started
    line = next((ln for ln in stdout.decode().splitlines()[::-1] if ln.startswith("{")), None)
    if proc.returncode or line is None:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        progress = next((ln.strip() for ln in tail[::-1] if "pairs" in ln and "videos" in ln), None)
        return {
            "error": f"did not finish in {elapsed:,.0f} s (bound {timeout:,.0f} s), exit {proc.returncode}: "
            + (tail[-1][:300] if tail else ""),
            "last_progress": progress,
            "stopped_after_s": r(elapsed, 1),
            # It had not finished: its rate was below this (start-up included, so a loose bound).
            "events_per_s_at_most": r(n / elapsed, 0),
        }
    out = json.loads(line)
    quix = json.loads(counts_file.read_text())
    want = env.reference_counts
    wrong = [v for v in set(want) | set(quix) if quix.get(v) != want.get(v)]
    client = redis.Redis.from_url(s.redis_url)
    try:
        videos = sorted(quix)
        docs = dict(zip(videos, client.hmget(VIDEO_STATS_KEY, videos), strict=True))
    finally:
        client.close()
    unlike_recstream = []
    for v in videos:
        doc = json.loads(docs[v]) if docs[v] else {}
        if any(doc.get(k) != val for k, val in scoring.stats_view(quix[v]).items()):
            unlike_recstream.append(v)
    out.update(
        counts_equal_reference=not wrong,
        counts_equal_recstream=not unlike_recstream,
        videos_differing_from_reference=len(wrong),
        videos_differing_from_recstream=len(unlike_recstream),
        differing_examples=sorted(set(wrong) | set(unlike_recstream))[:5],
    )
    out.pop("video_counts_file", None)
    return out


def stage_ingest(env: BenchEnv) -> dict[str, Any]:
    cfg, cluster, s = env.cfg, env.cluster, env.settings
    assert cluster is not None
    n = cfg.events
    topic = topic_names(s).interactions
    say(f"ingest 1/7: catalog of {cfg.videos:,} videos through a first worker (state for later stages)")
    from recstream.kafka.admin import ensure_topics

    asyncio.run(ensure_topics(s))
    asyncio.run(_produce_catalog(env))
    cluster.start_worker(env.port)
    if not asyncio.run(_wait_counter(env.url, "catalog", cfg.videos, timeout=120)):
        raise RuntimeError("the catalog was not processed in 120 s")
    # Its first look at Redis sets the epoch. Stopped before that (a small catalog is done in < 2 s),
    # the fresh worker below would find none and rewrite every view from its tables in the middle of
    # the ingest, as a worker must when Redis lost its data (`agents.rematerialise`): --quick runs
    # then failed the exactness check with stats seconds late.
    client = redis.Redis.from_url(s.redis_url)
    try:
        if not wait_for(lambda: client.exists(EPOCH_KEY), timeout=10 * s.redis_check_interval_s):
            raise RuntimeError("the catalog worker never looked at Redis's epoch")
    finally:
        client.close()
    cluster.stop()  # the next worker is fresh: it starts with the catalog loaded and no event consumed

    say(
        f"ingest 2/7: producing the pinned workload ({n:,} events, {cfg.users:,} users, {cfg.videos:,} "
        f"videos, zipf {cfg.zipf}) to {topic}"
    )
    end_ms = now_ms()
    t0 = time.perf_counter()
    sent = asyncio.run(
        workload.produce(
            env.wcfg, s.kafka_bootstrap, topic, s.interactions_partitions, end_ms=end_ms, quiet=True
        )
    )
    elapsed = time.perf_counter() - t0
    produced = {"events": sent, "seconds": r(elapsed, 2), "events_per_s": r(sent / elapsed, 0)}
    say(f"  produced {sent:,} events in {produced['seconds']} s ({produced['events_per_s']:,.0f}/s)")

    say("ingest 3/7: the reference state, computed from scratch from the same events (not timed)")
    t0 = time.perf_counter()
    produced.update(_expected_state(env, end_ms))
    produced["reference_seconds"] = r(time.perf_counter() - t0, 1)
    say(
        f"  reference: {len(env.reference.histories):,} users, {len(env.reference.videos):,} videos, "
        f"{len(env.reference.neighbours):,} with neighbours, in {produced['reference_seconds']} s"
    )

    say("ingest 4/7: reference row: a raw AIOKafkaConsumer reads them all (then again with validation)")
    raw = asyncio.run(_raw_consume(s, n, validate=False, timeout=cfg.stage_timeout_s))
    raw_validate = asyncio.run(_raw_consume(s, n, validate=True, timeout=cfg.stage_timeout_s))
    say(
        f"  raw aiokafka: {raw.get('events_per_s') or raw}/s; with pydantic validation "
        f"{raw_validate.get('events_per_s') or raw_validate}/s"
    )

    say("ingest 5/7: a fresh recstream worker processes them all (rate from its /metrics counters)")
    started = time.perf_counter()
    process = cluster.start_worker(env.port)
    startup = time.perf_counter() - started
    cpu_before = _cpu_seconds(process.proc.pid)
    with Profiler(env, "ingest"):
        watched = asyncio.run(
            _watch_counters(
                cfg,
                env.url,
                lambda: n,
                cfg.ingest_timeout_s,
                pairs=env.expected_pairs[0],
                redis_url=s.redis_url,
            )
        )
    cpu = _cpu_seconds(process.proc.pid) - cpu_before
    if "error" in watched:
        worker: dict[str, Any] = {"error": watched["error"]}
        say(f"  worker: {worker}")
    else:
        worker = _rates(watched)
        # CPU time per event: what a faster machine or a quieter one would not change (the rates above
        # depend on what else these 2 cores run), so the figure to compare changes by.
        worker["cpu_s"], worker["cpu_us_per_event"] = r(cpu, 1), r(cpu / n * 1e6, 1)
        say(
            f"  worker: end of pipeline {worker.get('pipeline_events_per_s')} events/s, history "
            f"{worker.get('history_events_per_s')} events/s, {worker.get('covisit_pairs'):,} co-visitation pairs; "
            f"{worker['cpu_us_per_event']} CPU µs per event (worker process, {worker['cpu_s']} s, of which "
            f"the garbage collector {worker.get('gc_s')} s, by generation {worker.get('gc_by_generation_s')})"
        )
    env.counted = {"history": n, "engagement": n}
    say("ingest 6/7: exactness: Redis against the reference; Kafka messages written per event")
    exact = _exactness(s, env.reference, env.params, env.expected_pairs, "ingest", cfg.stage_timeout_s)
    time.sleep(s.state_flush_interval_s + 1.0)  # the last dirty keys reach their changelogs
    written = asyncio.run(_messages_per_event(s, n))
    say(f"  Kafka messages written per event: {written}")

    quix: dict[str, Any] = {"skipped": True}
    if cfg.quix:
        say("ingest 7/7: peer: the same work in quixstreams (benchmarks/quix_peer.py), same topic")
        quix = _quix_peer(env, n)
        say(
            f"  quixstreams: {quix.get('events_per_s')} events/s; counts equal the reference: "
            f"{quix.get('counts_equal_reference')}, equal recstream's: {quix.get('counts_equal_recstream')}"
            if "error" not in quix
            else f"  quixstreams: {quix['error'][-500:]}"
        )
    return {
        "produced": produced,
        "raw_aiokafka": raw,
        "raw_aiokafka_validate": raw_validate,
        "worker": worker,
        "exactness": exact,
        "worker_startup_s": r(startup, 2),
        "kafka_messages_per_event": written,
        "quixstreams": quix,
    }


class CpuContention:
    """How much a process waited for a CPU while it had work, and how busy the host was, over a stage:
    on this shared 2-core host a worker's latency tail is its own work plus its turns in the run queue.
    From Linux's /proc/<pid>/schedstat (the main thread, which runs the event loop: time on a CPU, time
    runnable but waiting for one) and /proc/stat (all cores)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _read(self) -> tuple[float, float, float, float, float]:
        on_cpu, waiting = (int(x) / 1e9 for x in Path(f"/proc/{self.pid}/schedstat").read_text().split()[:2])
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = cpu[3] + cpu[4]  # idle + iowait, in clock ticks
        return time.perf_counter(), on_cpu, waiting, sum(cpu) - idle, sum(cpu)

    def __enter__(self) -> CpuContention:
        self._start = self._read()
        self.result: dict[str, Any] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            t, on_cpu, waiting, busy, total = (b - a for a, b in zip(self._start, self._read(), strict=True))
            self.result = {
                "worker_loop_thread_cpu_share": r(on_cpu / t, 3),
                "worker_loop_thread_runqueue_wait_share": r(waiting / t, 3),
                "host_busy_share": r(busy / total, 3) if total else None,
                "cores": os.cpu_count(),
            }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------
# 2. http
# --------------------------------------------------------------------------------------------------
WRK_LUA = r"""
local ids = {}
for line in io.lines(os.getenv("BENCH_USERS")) do ids[#ids + 1] = line end
local k = os.getenv("BENCH_K")
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  return wrk.format("GET", "/recommendations/" .. ids[math.random(#ids)] .. "?k=" .. k)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _wrk(env: BenchEnv, base: str, seconds: int, users_file: Path) -> dict[str, Any]:
    lua = env.root / "recommendations.lua"
    lua.write_text(WRK_LUA)
    cmd = [
        "wrk",
        "-t1",
        f"-c{env.cfg.http_concurrency}",
        f"-d{max(1, int(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(lua),
        base + "/",  # the path comes from the Lua script
    ]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={**os.environ, "BENCH_USERS": str(users_file), "BENCH_K": str(env.cfg.http_k)},
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        return {"error": (out.stdout + out.stderr)[-800:]}
    d = json.loads(line[len("WRKJSON ") :])
    errors = sum(d["errors"].values())
    return {
        "requests": d["requests"],
        "requests_per_s": r(d["requests"] / (d["duration_us"] / 1e6), 0),
        "p50_ms": r(d["p50_us"] / 1000, 2),
        "p90_ms": r(d["p90_us"] / 1000, 2),
        "p99_ms": r(d["p99_us"] / 1000, 2),
        "max_ms": r(d["max_us"] / 1000, 2),
        "mean_ms": r(d["mean_us"] / 1000, 2),
        "errors": errors,
        "error_detail": d["errors"],
        "bytes_per_response": r(d["bytes"] / max(1, d["requests"]), 0),
    }


async def _python_load(
    base: str, users: list[str], concurrency: int, seconds: float, k: int
) -> dict[str, Any]:
    """Closed-loop async client: `concurrency` connections, each issuing requests back to back."""
    latencies: list[float] = []
    errors = 0
    rng = random.Random(0)
    deadline = time.perf_counter() + seconds

    async def one(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                async with http.get(f"{base}/recommendations/{rng.choice(users)}?k={k}") as resp:
                    await resp.read()
                    if resp.status >= 400:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(one(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "requests_per_s": r(len(ms) / elapsed, 0),
        "p50_ms": r(pct(ms, 50), 2),
        "p90_ms": r(pct(ms, 90), 2),
        "p99_ms": r(pct(ms, 99), 2),
        "max_ms": r(max(ms, default=0), 2),
        "mean_ms": r(sum(ms) / max(1, len(ms)), 2),
        "errors": errors,
    }


def _load(env: BenchEnv, base: str, seconds: int, users_file: Path, generator: str) -> dict[str, Any]:
    if generator == "wrk":
        return _wrk(env, base, seconds, users_file)
    return asyncio.run(
        _python_load(base, env.users_with_history, env.cfg.http_concurrency, seconds, env.cfg.http_k)
    )


def _start_bare(env: BenchEnv, mode: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    assert env.cluster is not None
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "bare_aiohttp.py"),
            "--port",
            str(port),
            "--mode",
            mode,
            "--k",
            str(env.cfg.http_k),
            "--max-seconds",
            str(int(env.cfg.stage_timeout_s)),
        ],
        env={**env.cluster.env},
        stdout=subprocess.DEVNULL,
        stderr=open(env.root / f"bare-{mode}.log", "wb"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"bare aiohttp ({mode}) exited: {(env.root / f'bare-{mode}.log').read_text()[-2000:]}"
            )
        with contextlib.suppress(OSError):
            from recstream.devtools.devcluster import get

            if get(base + "/health")[0] == 200:
                return proc, base
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"bare aiohttp ({mode}) did not start")


def _state(env: BenchEnv) -> dict[str, int]:
    client = redis.Redis.from_url(env.settings.redis_url)
    videos_with_neighbours = sum(1 for _ in client.scan_iter("nbrs:*", count=5000))
    users_with_history = sum(1 for _ in client.scan_iter("hist:*", count=5000))
    return {
        "videos_in_catalog": client.hlen("video:meta"),
        "videos_with_neighbours": videos_with_neighbours,
        "users_with_history": users_with_history,
    }


def _sanity(base: str, users: list[str], k: int) -> dict[str, Any]:
    from recstream.devtools.devcluster import get

    sizes, reasons = [], Counter()
    for user in users[:20]:
        status, body = get(f"{base}/recommendations/{user}?k={k}")
        if status != 200:
            raise RuntimeError(f"GET /recommendations/{user} -> {status} {body}")
        sizes.append(len(body["items"]))
        for item in body["items"]:
            for reason in item["reasons"]:
                reasons["itemcf" if reason.startswith("because") else reason] += 1
    return {"mean_items": r(sum(sizes) / len(sizes), 1), "reasons": dict(reasons)}


def stage_http(env: BenchEnv) -> dict[str, Any]:
    cfg = env.cfg
    generator = cfg.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    users_file = env.root / "users.txt"
    users_file.write_text("\n".join(env.users_with_history) + "\n")
    time.sleep(env.settings.persist_interval_s + 0.5)  # let the MongoDB persist timers drain first
    state = _state(env)
    say(
        f"http 1/3: state {state}; load generator {generator}, {cfg.http_concurrency} connections, "
        f"{cfg.http_duration_s} s per target"
    )
    sample = _sanity(env.url, env.users_with_history, cfg.http_k)
    out: dict[str, Any] = {
        "load_generator": generator,
        "concurrency": cfg.http_concurrency,
        "duration_s": cfg.http_duration_s,
        "k": cfg.http_k,
        "state": state,
        "sample_answers": sample,
    }
    if cfg.http_warmup_s:
        _load(env, env.url, cfg.http_warmup_s, users_file, generator)
    with Profiler(env, "http"):
        out["recstream"] = _load(env, env.url, cfg.http_duration_s, users_file, generator)
    say(f"  recstream /recommendations: {_brief(out['recstream'])}")
    for step, (mode, key) in enumerate((("static", "bare_aiohttp"),), 2):
        say(f"http {step}/2: peer: bare aiohttp ({mode})")
        try:
            proc, base = _start_bare(env, mode)
        except RuntimeError as exc:  # a peer that cannot start is reported, not the end of the stage
            out[key] = {"error": " ".join(str(exc).split())[-300:]}
            say(f"  bare aiohttp ({mode}): {_brief(out[key])}")
            continue
        try:
            if cfg.http_warmup_s:
                _load(env, base, cfg.http_warmup_s, users_file, generator)
            out[key] = _load(env, base, cfg.http_duration_s, users_file, generator)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        say(f"  bare aiohttp ({mode}): {_brief(out[key])}")
    return out


def _brief(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"error {d['error']}"
    return (
        f"{d['requests_per_s']:,.0f} req/s, p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, errors {d['errors']}"
    )


# --------------------------------------------------------------------------------------------------
# 3. freshness
# --------------------------------------------------------------------------------------------------
async def _freshness(env: BenchEnv) -> dict[str, Any]:
    cfg, s = env.cfg, env.settings
    topic = topic_names(s).interactions
    rng = random.Random(cfg.seed)
    users = list(env.users_with_history)
    rng.shuffle(users)
    seen_store = redis.Redis.from_url(s.redis_url, decode_responses=True)
    url = env.read_url(cfg.freshness_via)

    # The peer: the same event's delivery to a plain consumer of the same topic.
    arrivals: dict[tuple[str, str, int], float] = {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in range(s.interactions_partitions)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)

    async def listen() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for msgs in batches.values():
                for m in msgs:
                    with contextlib.suppress(ValueError, KeyError):
                        d = json.loads(m.value)
                        arrivals[(d["user_id"], d["video_id"], d["ts"])] = now

    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap, linger_ms=0, acks="all", enable_idempotence=True
    )
    await producer.start()
    listener = asyncio.create_task(listen())
    samples: list[dict[str, float | None]] = []
    skipped = 0
    aborted = False
    misses: list[dict[str, Any]] = []
    deadline = time.monotonic() + cfg.stage_timeout_s
    try:
        async with aiohttp.ClientSession() as http:

            async def recs(user: str) -> list[dict]:
                async with http.get(f"{url}/recommendations/{user}?k={cfg.http_k}") as resp:
                    return (await resp.json())["items"]

            async def similar(video: str) -> list[str]:
                async with http.get(f"{url}/videos/{video}/similar?k=50") as resp:
                    return [i["video_id"] for i in (await resp.json())["items"]]

            async def rank_in_k500(user: str, because: str) -> int | None:
                """Where the first item with this reason ranks in a 500-long list (None: nowhere)."""
                async with http.get(f"{url}/recommendations/{user}?k=500") as resp:
                    wide = (await resp.json())["items"]
                return next((n + 1 for n, i in enumerate(wide) if because in i["reasons"]), None)

            await asyncio.sleep(0.5)  # the listener has its partitions
            for user in itertools.cycle(users):
                if len(samples) >= cfg.freshness_samples or time.monotonic() > deadline:
                    break
                if skipped > 10 * cfg.freshness_samples:
                    break
                if len(samples) >= 20 and all(x["gone_ms"] is None for x in samples[-20:]):
                    aborted = True  # 20 in a row without any effect: the pipeline is behind, stop waiting
                    break
                before = await recs(user)
                seen = seen_store.smembers(f"seen:{user}")
                target = None
                for item in before[:5]:  # a video on the user's screen that has unseen neighbours
                    if any(v not in seen and v != item["video_id"] for v in await similar(item["video_id"])):
                        target = item["video_id"]
                        break
                if target is None:
                    skipped += 1
                    continue
                duration = int(env.world.duration_ms[int(target[1:])])
                event = Interaction(
                    type="view",
                    user_id=user,
                    video_id=target,
                    ts=now_ms(),
                    watch_time_ms=duration,
                    duration_ms=duration,
                )
                because = f"because you watched {target}"
                acked: list[float] = []
                t0 = time.perf_counter()
                future = await producer.send(topic, encode(event), key=user.encode())
                future.add_done_callback(lambda _f, acked=acked: acked.append(time.perf_counter()))
                t_gone = t_done = t_history = None
                wide_rank_at_gone: int | str | None = "-"  # "-": the top k had it as soon as it was gone
                # Until the event is in the user's Redis history, nothing the list shows depends on it (a
                # list is made from that history, read per request): poll Redis, not the measured worker,
                # whose 200 requests a second (one every 5 ms) took ~15 % of its CPU from the pipeline.
                while time.perf_counter() - t0 < cfg.freshness_timeout_s:
                    raw = seen_store.get(history_key(user))
                    if raw and any(e[0] == target and e[1] == event.ts for e in json.loads(raw)):
                        t_history = time.perf_counter()
                        break
                    await asyncio.sleep(HISTORY_POLL_S)
                while t_history is not None and time.perf_counter() - t0 < cfg.freshness_timeout_s:
                    items = await recs(user)
                    t = time.perf_counter()
                    gone = all(i["video_id"] != target for i in items)
                    if gone and t_gone is None:
                        t_gone = t
                    if gone and any(because in i["reasons"] for i in items):
                        t_done = t
                        break
                    if gone and wide_rank_at_gone == "-":
                        # Gone but nothing credited to it in the top k yet: is there any further down?
                        # (None: the process's neighbour list of the video gave no candidate yet.)
                        wide_rank_at_gone = await rank_in_k500(user, because)
                    await asyncio.sleep(cfg.freshness_poll_s)
                await asyncio.sleep(0.05)  # the listener records the delivery; samples do not overlap
                arrived = arrivals.get((user, target, event.ts))
                sample = {
                    "effect_ms": (t_done - t0) * 1000 if t_done else None,
                    "gone_ms": (t_gone - t0) * 1000 if t_gone else None,
                    "history_ms": (t_history - t0) * 1000 if t_history else None,
                    "ack_ms": (acked[0] - t0) * 1000 if acked else None,
                    "kafka_delivery_ms": (arrived - t0) * 1000 if arrived else None,
                    "first_because_rank_in_k500_at_gone": wide_rank_at_gone,
                }
                samples.append(sample)
                if t_done is None and len(misses) < 5:
                    # Diagnose: where does the first item credited to the video rank in a longer list?
                    rank = await rank_in_k500(user, because)
                    misses.append(
                        {
                            "user": user,
                            "video": target,
                            "gone": t_gone is not None,
                            "delivered": arrived is not None,
                            "first_because_rank_in_k500": rank,
                        }
                    )
                if len(samples) % 50 == 0:
                    done = [x["effect_ms"] for x in samples if x["effect_ms"] is not None]
                    say(f"  freshness: {len(samples)} samples, p50 so far {pct(done, 50) or 0:.0f} ms")
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
        await producer.stop()
        await consumer.stop()
        seen_store.close()

    def stats(key: str) -> dict[str, float | None]:
        values = [x[key] for x in samples if x[key] is not None]
        return {
            "n": len(values),
            "p50_ms": r(pct(values, 50)),
            "p90_ms": r(pct(values, 90)),
            "p99_ms": r(pct(values, 99)),
            "max_ms": r(max(values, default=None)),
        }

    return {
        "samples": len(samples),
        "k": cfg.http_k,
        "timeout_s": cfg.freshness_timeout_s,
        # The watched video never left the list within the timeout: the event had no visible effect.
        "not_gone": sum(1 for x in samples if x["gone_ms"] is None),
        # It left, but no video credited to it ("because you watched") reached the top k in time.
        "no_neighbour_in_top_k": sum(1 for x in samples if x["effect_ms"] is None),
        "misses": misses,
        "skipped_users": skipped,
        "aborted_20_in_a_row_without_effect": aborted,
        "effect": stats("effect_ms"),
        "seen_video_gone": stats("gone_ms"),
        "in_redis_history": stats("history_ms"),
        "kafka_delivery": stats("kafka_delivery_ms"),
        "producer_ack": stats("ack_ms"),
        "via": cfg.freshness_via,
        "poll_interval_ms": cfg.freshness_poll_s * 1000,
        "history_poll_interval_ms": HISTORY_POLL_S * 1000,
        # Samples whose video left the list before anything credited to it entered the top k (each then
        # made one k=500 request, ~5 ms, to see where the first such item ranked: a conservative cost).
        "because_after_gone": sum(1 for x in samples if x["first_because_rank_in_k500_at_gone"] != "-"),
        # Where a slow sample's time went: its steps, slowest first (the p99 is the third of 300).
        "slowest": [
            {key: r(value) if isinstance(value, float) else value for key, value in x.items()}
            for x in sorted(samples, key=lambda x: -(x["effect_ms"] or math.inf))[:5]
        ],
    }


def stage_freshness(env: BenchEnv) -> dict[str, Any]:
    rate = env.cfg.freshness_background_rate
    say(
        f"freshness: {env.cfg.freshness_samples} events, one at a time, until each shows in that user's list, "
        f"while a separate process produces workload events at {rate:,.0f}/s"
    )
    before, t0 = asyncio.run(_counters(env.url)), time.perf_counter()
    pid = env.worker_pid()
    assert pid is not None
    with BackgroundLoad(env, rate) as load:
        time.sleep(2.0 if rate else 0.0)  # the pipeline is at the background rate before the first sample
        with CpuContention(pid) as contention:
            out = asyncio.run(_freshness(env))
    after, elapsed = asyncio.run(_counters(env.url)), time.perf_counter() - t0
    out["cpu_contention"] = contention.result
    # What the worker kept up with meanwhile: below the background rate, a backlog (and lag) grows.
    worker_rate = (after.get("history", 0) - before.get("history", 0)) / elapsed
    out["background"] = {
        "target_events_per_s": rate,
        **load.result,
        "worker_history_events_per_s": r(worker_rate, 0),
        "backlog_at_end": int(
            load.result.get("events", 0)
            + out["samples"]
            - (after.get("history", 0) - before.get("history", 0))
        ),
    }
    if rate and "error" in load.result:
        say(f"  !!! background producer: {load.result['error']}")
    e = out["effect"]
    say(
        f"  freshness: p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms over {e['n']} of {out['samples']} samples "
        f"(no neighbour in the top {env.cfg.http_k}: {out['no_neighbour_in_top_k']}, video not gone: "
        f"{out['not_gone']}); Kafka delivery p50 {out['kafka_delivery']['p50_ms']} ms; background "
        f"{out['background'].get('events_per_s')} events/s achieved, the worker's history agent did "
        f"{out['background']['worker_history_events_per_s']}/s (backlog at the end "
        f"{out['background']['backlog_at_end']:,})"
    )
    c = out["cpu_contention"]
    if c:
        say(
            f"  while sampling, the worker's event-loop thread ran {c['worker_loop_thread_cpu_share']:.0%} of "
            f"the time and waited for a CPU {c['worker_loop_thread_runqueue_wait_share']:.0%}; the host's "
            f"{c['cores']} cores were {c['host_busy_share']:.0%} busy"
        )
    return out


# --------------------------------------------------------------------------------------------------
# Background load (freshness under load): workload events at a fixed rate, from a child process
# --------------------------------------------------------------------------------------------------
async def _paced_produce(
    wcfg: workload.WorkloadConfig,
    bootstrap: str,
    topic: str,
    partitions: int,
    rate: float,
    max_s: float,
    stop: Any,
) -> dict[str, Any]:
    """Workload events (stamped now) at `rate` events/s, keyed and partitioned like the workload, sent
    as one batch per partition every 20 ms, until `stop` is set or `max_s` passed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    events = workload.world(wcfg).events(clock=now_ms)
    partition_of: dict[str, int] = {}
    futures: list[asyncio.Future] = []
    sent = 0
    t0 = time.perf_counter()
    try:
        while not stop.is_set() and time.perf_counter() - t0 < max_s:
            due = int((time.perf_counter() - t0) * rate)
            batches: dict[int, Any] = {}
            while sent < due:
                e = next(events)
                p = partition_of.get(e.user_id)
                if p is None:
                    p = partition_of[e.user_id] = partition_for(e.user_id.encode(), partitions)
                batch = batches.get(p) or batches.setdefault(p, producer.create_batch())
                if batch.append(key=e.user_id.encode(), value=encode(e), timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batches[p] = batch = producer.create_batch()
                    batch.append(key=e.user_id.encode(), value=encode(e), timestamp=None)
                sent += 1
            for p, batch in batches.items():
                futures.append(await producer.send_batch(batch, topic, partition=p))
            if len(futures) > 2000:
                await asyncio.gather(*futures)
                futures.clear()
            await asyncio.sleep(0.02)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - t0
    return {"events": sent, "seconds": r(elapsed, 2), "events_per_s": r(sent / elapsed, 0)}


def _paced_child(
    wcfg: workload.WorkloadConfig,
    bootstrap: str,
    topic: str,
    partitions: int,
    rate: float,
    max_s: float,
    stop: Any,
    out: Any,
) -> None:
    try:
        out.put(asyncio.run(_paced_produce(wcfg, bootstrap, topic, partitions, rate, max_s, stop)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put({"error": f"{type(exc).__name__}: {exc}"})


class BackgroundLoad:
    """`with BackgroundLoad(env, rate):` workload events to the interactions topic at `rate`/s meanwhile
    (a separate process, so the sampling client's loop is not slowed by it). `.result` afterwards."""

    def __init__(self, env: BenchEnv, rate: float, seed_offset: int = 1000) -> None:
        self.env, self.rate = env, rate
        self.wcfg = dataclasses.replace(env.wcfg, seed=env.wcfg.seed + seed_offset)
        ctx = multiprocessing.get_context("fork")
        self.stop, self.out = ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(
            target=_paced_child,
            args=(
                self.wcfg,
                env.settings.kafka_bootstrap,
                topic_names(env.settings).interactions,
                env.settings.interactions_partitions,
                rate,
                env.cfg.stage_timeout_s,
                self.stop,
                self.out,
            ),
            daemon=True,
        )
        self.result: dict[str, Any] = {}

    def __enter__(self) -> BackgroundLoad:
        if self.rate > 0:
            self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.rate <= 0:
            return
        self.stop.set()
        try:
            self.result = self.out.get(timeout=60)
        except queue.Empty:
            self.result = {"error": "the background producer reported nothing"}
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


async def _settle(url: str, quiet_s: float = 2.0, timeout: float = 180.0) -> dict[str, float]:
    """Wait until no agent counter moves for `quiet_s` (the worker has caught up); the counters."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    next_line = time.monotonic() + 10
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            _, c = await _metrics(http, url)
            key = tuple(c.get(a, 0.0) for a in AGENTS)
            if key != last:
                last, since = key, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return c
            if time.monotonic() > next_line:
                next_line += 10
                say(f"  waiting for the worker to finish its backlog: history {c.get('history', 0):,.0f}")
            await asyncio.sleep(0.25)
    raise RuntimeError(f"the worker did not settle within {timeout:.0f} s: {last}")


# --------------------------------------------------------------------------------------------------
# 4. burst: POST /events throughput, then 60,000 events at 3,000/s with a probe user
# --------------------------------------------------------------------------------------------------
def _bodies(env: BenchEnv, events: int, batch: int, seed_offset: int) -> list[bytes]:
    """POST /events bodies of `batch` workload events each (another seed: new sessions), stamped now."""
    world = workload.world(dataclasses.replace(env.wcfg, seed=env.wcfg.seed + seed_offset))
    stream = itertools.islice(world.events(clock=now_ms), events)
    out = []
    while chunk := list(itertools.islice(stream, batch)):
        out.append(b'{"events":[' + b",".join(encode(e) for e in chunk) + b"]}")
    return out


async def _post_events(http: aiohttp.ClientSession, url: str, body: bytes) -> int | None:
    """POST one body to /events: how many events were accepted, or None when the request failed."""
    try:
        async with http.post(
            url + "/events", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            data = await resp.read()
            return json.loads(data)["accepted"] if resp.status == 202 else None
    except aiohttp.ClientError:
        return None


async def _post_throughput(url: str, bodies: list[bytes], seconds: float, concurrency: int) -> dict[str, Any]:
    """`concurrency` clients POSTing the bodies back to back for `seconds` (closed loop)."""
    accepted, errors, requests, reused = 0, 0, 0, 0
    latencies: list[float] = []
    nxt = itertools.count()
    deadline = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal accepted, errors, requests, reused
        while time.perf_counter() < deadline:
            i = next(nxt)
            reused += i >= len(bodies)
            t0 = time.perf_counter()
            n = await _post_events(http, url, bodies[i % len(bodies)])
            accepted, errors = accepted + (n or 0), errors + (n is None)
            requests += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout
    ) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        ended = time.perf_counter()
    return {
        "accepted": accepted,
        "requests": requests,
        "errors": errors,
        "bodies_reused": reused,
        "seconds": r(ended - started, 2),
        "events_per_s": r(accepted / (ended - started), 0),
        "request_p50_ms": r(pct(latencies, 50)),
        "request_p99_ms": r(pct(latencies, 99)),
        "ended_at": ended,
    }


async def _paced_with_probe(env: BenchEnv, bodies: list[bytes], batch: int) -> dict[str, Any]:
    """POST the bodies open-loop at cfg.paced_rate events/s; every cfg.probe_interval_s, one view of a
    new video by a probe user, timed from its POST until `hist:{probe}` in Redis holds it."""
    import redis.asyncio as aredis

    cfg = env.cfg
    interval = batch / cfg.paced_rate
    probe = f"probe-{random.Random().getrandbits(32):08x}"
    n_probes = int(len(bodies) * interval / cfg.probe_interval_s) + 1
    rng = random.Random(cfg.seed + 7)
    videos = rng.sample(range(cfg.videos), min(cfg.videos, n_probes, env.settings.history_length - 1))
    pending: dict[str, float] = {}
    latencies: list[float] = []
    accepted, errors, probes_sent = 0, 0, 0
    store = aredis.Redis.from_url(env.settings.redis_url)
    key = history_key(probe)
    done = asyncio.Event()

    async def watch() -> None:
        while not (done.is_set() and not pending):
            if pending:
                raw = await store.get(key)
                now = time.perf_counter()
                have = {e[0] for e in json.loads(raw)} if raw else set()
                for v in [v for v in pending if v in have]:
                    latencies.append((now - pending.pop(v)) * 1000)
            await asyncio.sleep(0.01)

    async def post(http: aiohttp.ClientSession, body: bytes) -> None:
        nonlocal accepted, errors
        n = await _post_events(http, env.post_url or env.url, body)
        accepted, errors = accepted + (n or 0), errors + (n is None)

    async def send_probe(http: aiohttp.ClientSession, index: int) -> None:
        nonlocal probes_sent
        v = videos[index]
        video = env.world.video_id(v)
        duration = int(env.world.duration_ms[v])
        body = encode(
            Interaction(
                type="view",
                user_id=probe,
                video_id=video,
                ts=now_ms(),
                watch_time_ms=duration,
                duration_ms=duration,
            )
        )
        pending[video] = time.perf_counter()
        probes_sent += 1
        await post(http, body)

    tasks: list[asyncio.Task] = []
    watcher = asyncio.create_task(watch())
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), timeout=timeout) as http:
            t0 = time.perf_counter()
            next_probe = t0 + cfg.probe_interval_s / 2
            probe_index = 0
            for i, body in enumerate(bodies):
                while True:
                    now = time.perf_counter()
                    if probe_index < len(videos) and now >= next_probe:
                        tasks.append(asyncio.create_task(send_probe(http, probe_index)))
                        probe_index += 1
                        next_probe += cfg.probe_interval_s
                    wait = t0 + i * interval - now
                    if wait <= 0:
                        break
                    until_probe = next_probe - now if probe_index < len(videos) else wait
                    await asyncio.sleep(max(0.001, min(wait, until_probe)))
                tasks.append(asyncio.create_task(post(http, body)))
            await asyncio.gather(*tasks)
            ended = time.perf_counter()
        done.set()
        await asyncio.wait_for(watcher, timeout=15)
    except TimeoutError:
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        await store.aclose()
    return {
        "accepted": accepted,
        "errors": errors,
        "seconds": r(ended - t0, 2),
        "events_per_s": r(accepted / (ended - t0), 0),
        "probe_user": probe,
        "probes": probes_sent,
        "probes_seen": len(latencies),
        "probes_not_seen_within_15s": len(pending),
        "probe_p50_ms": r(pct(latencies, 50)),
        "probe_p99_ms": r(pct(latencies, 99)),
        "probe_max_ms": r(max(latencies, default=None)),
        "ended_at": ended,
    }


def stage_burst(env: BenchEnv) -> dict[str, Any]:
    cfg = env.cfg
    out: dict[str, Any] = {}
    cap = int(cfg.burst_seconds * cfg.burst_pregenerate_rate)
    say(
        f"burst 1/2: POST /events, {cfg.burst_concurrency} concurrent clients, batches of {cfg.burst_batch}, "
        f"{cfg.burst_seconds:g} s (pre-generating {cap:,} workload events first)"
    )
    bodies = _bodies(env, cap, cfg.burst_batch, seed_offset=2000)
    # Writes go where a deployment sends them: to `recstream web` (docker-compose publishes only its
    # port), a process without agents, so accepting a burst does not take turns with processing it.
    assert env.cluster is not None
    env.post_url = env.read_url("web")
    base = asyncio.run(_settle(env.url, timeout=cfg.stage_timeout_s))  # any earlier backlog done first
    post = asyncio.run(_post_throughput(env.post_url, bodies, cfg.burst_seconds, cfg.burst_concurrency))
    post["to"] = "recstream web, 1 process"
    say(f"  POSTing to `recstream web` ({env.post_url}), the deployment's write front; the worker processes")
    ended = post.pop("ended_at")
    say(
        f"  accepted {post['accepted']:,} events in {post['seconds']} s: {post['events_per_s']:,.0f} events/s "
        f"(errors {post['errors']}, request p99 {post['request_p99_ms']} ms); the pipeline catches up"
    )
    caught = asyncio.run(
        _watch_counters(cfg, env.url, lambda: post["accepted"], cfg.stage_timeout_s, base, "burst catch-up")
    )
    post["caught_up_s_after_burst"] = None if "error" in caught else r(caught["t_end"] - ended, 2)
    if "error" in caught:
        post["catch_up_error"] = caught["error"]
    out["post_throughput"] = post
    say(f"  the pipeline had them all {post['caught_up_s_after_burst']} s after the burst's end")
    del bodies

    n = cfg.paced_events
    say(
        f"burst 2/2: {n:,} events POSTed at {cfg.paced_rate:,.0f}/s (batches of {cfg.paced_batch}) with a "
        f"probe user's view every {cfg.probe_interval_s:g} s"
    )
    bodies = _bodies(env, n, cfg.paced_batch, seed_offset=3000)
    base = asyncio.run(_settle(env.url, timeout=cfg.stage_timeout_s))
    paced = asyncio.run(_paced_with_probe(env, bodies, cfg.paced_batch))
    ended = paced.pop("ended_at")
    total = paced["accepted"]  # the probe views included: they are accepted events too
    caught = asyncio.run(
        _watch_counters(
            cfg, env.url, lambda: total, cfg.stage_timeout_s, base, "paced catch-up", settle_s=1.0
        )
    )
    paced["caught_up_s_after_burst"] = None if "error" in caught else r(caught["t_end"] - ended, 2)
    if "error" in caught:
        paced["catch_up_error"] = caught["error"]
    out["paced"] = paced
    say(
        f"  {paced['accepted']:,} accepted at {paced['events_per_s']:,.0f}/s; probe -> hist p50 "
        f"{paced['probe_p50_ms']} / p99 {paced['probe_p99_ms']} / max {paced['probe_max_ms']} ms over "
        f"{paced['probes_seen']} of {paced['probes']}; caught up {paced['caught_up_s_after_burst']} s after"
    )
    return out


# --------------------------------------------------------------------------------------------------
# 5. replay: `recstream replay` of the workload (KuaiRand CSV) into a fresh cluster
# --------------------------------------------------------------------------------------------------
KUAIRAND_FLAGS = {"like": 5, "share": 6, "comment": 7, "follow": 8, "skip": 9}


def _write_kuairand(wcfg: workload.WorkloadConfig, path: Path) -> dict[str, int]:
    """The workload as a KuaiRand log: one row per watched video (view + its action flags, as the
    KuaiRand loader turns a row back into events: view, like, share, comment, follow, skip)."""
    rows = dropped = 0
    with open(path, "w") as f:
        f.write(
            "user_id,video_id,time_ms,play_time_ms,duration_ms,is_like,is_forward,is_comment,"
            "is_follow,is_hate\n"
        )
        row: list | None = None

        def flush() -> None:
            nonlocal rows
            if row is not None:
                f.write(",".join(map(str, row)) + "\n")
                rows += 1

        for e in workload.generate(wcfg):
            if e.type == "view":
                flush()
                row = [e.user_id, e.video_id, e.ts, e.watch_time_ms or 0, e.duration_ms or 0, 0, 0, 0, 0, 0]
            elif row is not None and (row[0], row[1], row[2]) == (e.user_id, e.video_id, e.ts):
                row[KUAIRAND_FLAGS[e.type]] = 1
            else:
                dropped += 1  # an action without its view (never, in this world)
        flush()
    return {"rows": rows, "orphan_actions_dropped": dropped, "bytes": path.stat().st_size}


async def _read_back(settings: Settings, timeout: float) -> list[tuple[int, int, Interaction]]:
    """Every interaction in the topic as (partition, offset, record), partition by partition."""
    topic = topic_names(settings).interactions
    parts = [TopicPartition(topic, p) for p in range(settings.interactions_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(parts)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        got: dict[int, list[tuple[int, bytes]]] = {tp.partition: [] for tp in parts}
        deadline = time.monotonic() + timeout
        while any(len(got[tp.partition]) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=500, max_records=50_000)).items():
                got[tp.partition] += [(m.offset, m.value) for m in msgs]
    finally:
        await consumer.stop()
    return [(p, o, Interaction.model_validate_json(v)) for p in sorted(got) for o, v in got[p]]


def stage_replay(env: BenchEnv) -> dict[str, Any]:
    """The replay of `cfg.replay_events` into a fresh cluster of each size in `cfg.replay_workers`: the
    first run's result, with the others under "more"."""
    cfg = env.cfg
    n = cfg.replay_events
    wcfg = dataclasses.replace(env.wcfg, events=n)
    path = env.root / "replay-kuairand.csv"
    say(f"replay 1/3: the pinned workload ({n:,} events) as a KuaiRand CSV (not timed)")
    written = _write_kuairand(wcfg, path)
    if env.cluster is not None:
        env.cluster.stop()  # the earlier stages' worker would only compete for the CPU
    runs = [_replay_run(env, path, workers, redis_db=1 + i) for i, workers in enumerate(cfg.replay_workers)]
    out = {"csv": written, **runs[0]}
    if len(runs) > 1:
        out["more"] = runs[1:]
    return out


def _replay_run(env: BenchEnv, path: Path, workers: int, redis_db: int) -> dict[str, Any]:
    cfg = env.cfg
    base = env.settings.model_copy(update={"redis_url": env.redis.url})
    cluster = Cluster(
        base, env.root / f"replay-data-{workers}", redis_db=redis_db, log_level=cfg.worker_log_level
    )
    env.extra_clusters.append(cluster)
    _faust_dirs(cluster)
    from recstream.kafka.admin import ensure_topics

    asyncio.run(ensure_topics(cluster.settings))
    started = [cluster.start_worker(free_port()) for _ in range(workers)]
    if workers > 1:
        cluster.wait_settled(timeout=cfg.stage_timeout_s)  # no event is processed twice across a rebalance
    urls = [w.url for w in started]
    what = "a fresh worker" if workers == 1 else f"a fresh cluster of {workers} worker processes"
    say(f"replay 2/3: `recstream replay kuairand {path.name} --as-fast-as-possible` into {what}")
    cmd = [
        str(Path(sys.executable).parent / "recstream"),
        "replay",
        "kuairand",
        str(path),
        "--as-fast-as-possible",
        "--quiet",
    ]
    log = env.root / f"replay-{workers}.log"
    published: dict[str, Any] = {}
    pids = [w.proc.pid for w in started]
    cpu_before = sum(_cpu_seconds(pid) for pid in pids)
    profiler = Profiler(env, "replay", pids[0]).__enter__()
    t0 = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=err, start_new_session=True
        )

        def target() -> int | None:
            if not published:
                if proc.poll() is None:
                    return None
                out = proc.stdout.read().decode() if proc.stdout else ""
                line = next((ln for ln in out.splitlines()[::-1] if ln.startswith("{")), None)
                published.update(
                    json.loads(line) if line else {"error": f"exit {proc.returncode}", "events": -1}
                )
                published["publisher_s"] = r(time.perf_counter() - t0, 2)
            return published["events"] if published["events"] >= 0 else None

        try:
            watched = asyncio.run(
                _watch_counters(
                    cfg,
                    urls,
                    target,
                    cfg.ingest_timeout_s,
                    label="replay",
                    redis_url=cluster.settings.redis_url,
                )
            )
        finally:
            profiler.__exit__()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
    out: dict[str, Any] = {"workers": workers, "replay": published}
    if "error" in watched or "error" in published:
        out["error"] = watched.get("error") or published.get("error")
        out["log_tail"] = log.read_text()[-1500:]
        say(f"  replay failed: {out['error']}")
        return out
    total = watched["t_end"] - t0
    cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu_before
    out.update(
        events=watched["n"],
        worker_cpu_s=r(cpu, 1),
        worker_cpu_us_per_event=r(cpu / watched["n"] * 1e6, 1),
        seconds=r(total, 2),
        minutes=r(total / 60, 2),
        events_per_s=r(watched["n"] / total, 0),
        redis_after_counters_s=watched.get("redis_after_counters_s"),
        redis_seen_after_counters_s=watched.get("redis_seen_after_counters_s"),
        covisit_pairs=watched["covisit_pairs"],
    )
    say(
        f"  {watched['n']:,} events fully materialised {out['seconds']} s after the replay started "
        f"({out['minutes']} min; the publisher itself took {published.get('publisher_s')} s; the "
        f"{'worker' if workers == 1 else f'{workers} workers'} {out['worker_cpu_s']} CPU s, "
        f"{out['worker_cpu_us_per_event']} µs per event)"
    )
    say("replay 3/3: exactness: the topic read back, the reference computed from it, compared with Redis")
    located = asyncio.run(_read_back(cluster.settings, cfg.stage_timeout_s))
    params = StreamParams.from_settings(cluster.settings)
    ref = reference.compute(located, params)
    pairs = _pair_digest(located, params)
    del located
    out["exactness"] = _exactness(cluster.settings, ref, params, pairs, "replay", cfg.stage_timeout_s)
    cluster.stop()
    return out


# --------------------------------------------------------------------------------------------------
def run_all(cfg: BenchConfig) -> dict[str, Any]:
    """Every stage on one environment (ingest builds the state the others use); always cleans up."""
    results: dict[str, Any] = {"config": asdict(cfg)}
    if cfg.profile and not find_py_spy(cfg.py_spy):
        say(
            "warning: --profile needs py-spy (`.venv/bin/pip install py-spy`, or --py-spy PATH); not profiling"
        )
    with BenchEnv(cfg) as env:
        results["isolation"] = {
            "topic_prefix": env.settings.topic_prefix,
            "app_id": env.settings.app_id,
            "redis": "private redis-server " + env.redis.version(),
            "mongo_db": env.settings.mongo_db,
        }
        results["ingest"] = stage_ingest(env)
        if "error" in results["ingest"]["worker"]:
            raise RuntimeError(f"ingest failed: {results['ingest']['worker']}")
        for name, stage in (
            ("http", stage_http),
            ("freshness", stage_freshness),
            ("burst", stage_burst),
            ("replay", stage_replay),  # last: it stops the worker the others use
        ):
            if name in cfg.stages:
                try:
                    results[name] = stage(env)
                except Exception as exc:  # one stage failing must not lose the others' numbers
                    say(f"!!! stage {name} failed: {type(exc).__name__}: {exc}")
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if env.profiles:
            results["profile"] = env.profiles
    return results
