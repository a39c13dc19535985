"""The streaming benchmarks: ingest, /recommendations and freshness, each against a peer in the same run.

Everything runs against real processes on 127.0.0.1: the local Kafka broker and MongoDB, a private
`redis-server` started for the run (so flushing its DB can never touch another run's or a test's
data), and real `recstream worker` processes on an isolated topic prefix, app id and MongoDB database
(`recstream.devcluster.Cluster`). Nothing is mocked.

1. ingest: N simulated events (`SimulatedWorld`, 10,000 videos) are produced to the interactions topic
   first. Peer: a raw `AIOKafkaConsumer` reads them all (and, for reference, the same plus pydantic
   validation of each message). Then a fresh worker processes them all; its rate is read from the
   `recstream_messages_processed_total{agent=...}` counters of GET /metrics polled every 0.25 s, from
   the first poll that sees work done (start-up excluded) to the (interpolated) moment the counter
   reaches the total: the history agent (first stage) and the end of the pipeline (engagement has
   every event, covisit has every pair message the history agent emitted).
2. http: GET /recommendations/{random user with a history} on the state that ingest built, with wrk
   (a Lua script picks the user) or an async Python client; peer: a bare aiohttp handler, same load
   generator, same concurrency, same duration (plus recstream's recommend() under bare aiohttp).
3. freshness: one view at a time of a video in the user's current list, sent with aiokafka; the time
   until that user's /recommendations no longer shows the video and shows one "because you watched"
   it. Peer: the same event's Kafka delivery (produce -> a raw consumer receives it).

Bounded: every loop stops after its count or its deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from recstream.devcluster import Cluster, free_port
from recstream.records import Interaction, encode, now_ms
from recstream.settings import Settings, get_settings
from recstream.simulator import SimulatedWorld, WorldConfig
from recstream.topics import topic_names

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METRIC = re.compile(r'^recstream_messages_processed_total\{agent="(\w+)"\} ([0-9.e+-]+)$', re.M)
DEAD = re.compile(r"^recstream_dead_letters_total\{[^}]*\} ([0-9.e+-]+)$", re.M)


@dataclass
class BenchConfig:
    events: int = 100_000
    """Events produced and ingested (and the state the http and freshness stages run on)."""
    users: int = 4_000
    videos: int = 10_000
    seed: int = 42
    catalog_age_days: float = 30.0
    """Videos were published uniformly over this many days before now."""
    live_rate: float = 25_000.0
    """Event timestamps advance as if the log had been written live at this rate (ending now)."""
    metrics_poll_s: float = 0.25
    worker_log_level: str = "info"
    """The production default. (At "warn", Faust's start-up spinner leaves the root logger at DEBUG.)"""
    http_duration_s: int = 10
    http_warmup_s: int = 2
    http_concurrency: int = 16
    http_k: int = 20
    load_generator: str = "auto"  # auto | wrk | python
    freshness_samples: int = 300
    freshness_timeout_s: float = 3.0
    freshness_poll_s: float = 0.005
    stage_timeout_s: float = 900.0
    """Bound of the HTTP and freshness stages and of each raw consumer pass."""
    ingest_timeout_s: float = 3600.0
    """Bound of the worker's ingest (the slowest stage by far)."""
    stall_s: float = 60.0
    """Ingest fails when no counter moved for this long."""
    profile: bool = False
    py_spy: str | None = None
    keep: bool = False
    stages: tuple[str, ...] = ("http", "freshness")
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
        self.world = SimulatedWorld(WorldConfig(users=cfg.users, videos=cfg.videos, seed=cfg.seed))
        self.users_with_history: list[str] = []
        self.port = free_port()
        self.profiles: dict[str, Any] = {}

    def __enter__(self) -> BenchEnv:
        self.redis.start()
        base = get_settings().model_copy(update={"redis_url": self.redis.url})
        self.cluster = Cluster(base, self.root / "data", redis_db=0, log_level=self.cfg.worker_log_level)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def settings(self) -> Settings:
        assert self.cluster is not None
        return self.cluster.settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pid(self) -> int | None:
        assert self.cluster is not None
        live = [w for w in self.cluster.workers if w.proc and w.proc.poll() is None]
        return live[-1].proc.pid if live else None

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            if not self.cfg.keep:
                with contextlib.suppress(Exception):
                    asyncio.run(_delete_topics(self.settings))
                with contextlib.suppress(Exception):
                    import pymongo

                    client = pymongo.MongoClient(self.settings.mongo_url, serverSelectionTimeoutMS=3000)
                    client.drop_database(self.settings.mongo_db)
                    client.close()
        self.redis.stop()
        if self.cfg.keep:
            say(f"kept {self.root} and the topics {self.settings.topic_prefix}.*")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


async def _delete_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        tags = (settings.topic_prefix + ".", settings.app_id + "-")
        ours = [t for t in await admin.list_topics() if t.startswith(tags)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


async def _metrics(http: aiohttp.ClientSession, url: str) -> tuple[float, dict[str, float]]:
    """(the request's mid-point time, {agent: messages processed, "dead_letters": n})."""
    t0 = time.perf_counter()
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    t = (t0 + time.perf_counter()) / 2
    counts = {agent: float(v) for agent, v in METRIC.findall(text)}
    counts["dead_letters"] = sum(float(v) for v in DEAD.findall(text))
    return t, counts


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

    def __init__(self, env: BenchEnv, name: str) -> None:
        self.env, self.name = env, name
        self.binary = find_py_spy(env.cfg.py_spy) if env.cfg.profile else None
        self.out = env.root / f"profile-{name}.txt"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        pid = self.env.worker_pid()
        if self.binary and pid:
            self.proc = subprocess.Popen(
                # --gil: only samples where a thread holds the GIL, i.e. Python CPU time, not idle waits.
                [
                    self.binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "100",
                    "--gil",
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


FOCUS = ("process (agents/", "recommend (recstream/recommend.py)", "ProducerBuffer._handle_pending (")


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
# 1. ingest
# --------------------------------------------------------------------------------------------------
async def _produce_catalog(env: BenchEnv) -> None:
    from recstream.replay import Publisher

    # Published over the last `catalog_age_days` (uniformly, seeded), so "fresh" (< 24 h) is a small
    # share of the catalog as on a real platform, not all of it.
    rng = random.Random(env.cfg.seed)
    now, span = now_ms(), int(env.cfg.catalog_age_days * 86_400_000)
    async with Publisher(env.settings) as publisher:
        for video in env.world.catalog(created_at=now):
            await publisher.video(video.model_copy(update={"created_at": now - rng.randrange(span)}))


async def _produce_events(env: BenchEnv) -> dict[str, Any]:
    from recstream.replay import Publisher

    n = env.cfg.events
    step_ms = 1000 / env.cfg.live_rate  # one watched video per tick (a view may bring a like etc.)
    start = now_ms() - n * step_ms
    ticks = itertools.count()
    users: set[str] = set()
    types: Counter[str] = Counter()
    t0 = time.perf_counter()
    async with Publisher(env.settings) as publisher:
        for event in itertools.islice(env.world.events(clock=lambda: int(start + next(ticks) * step_ms)), n):
            await publisher.event(event)
            users.add(event.user_id)
            types[event.type] += 1
    elapsed = time.perf_counter() - t0
    env.users_with_history = sorted(users)
    return {
        "events": n,
        "users": len(users),
        "by_type": dict(types),
        "seconds": r(elapsed, 2),
        "events_per_s": r(n / elapsed, 0),
    }


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


async def _covisit_total(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    return sum(offsets.values())


async def _watch_ingest(env: BenchEnv, timeout: float) -> dict[str, Any]:
    """Poll the worker's counters until every stage has every message; rates from the series."""
    n, s = env.cfg.events, env.settings
    covisit_topic = topic_names(s).covisit
    offsets = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
    await offsets.start()
    series: list[tuple[float, dict[str, float]]] = []
    covisit_total = None
    history_done_at = None
    deadline = time.monotonic() + timeout
    next_line = time.monotonic() + 5
    last_change, last_counts = time.monotonic(), None
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                t, c = await _metrics(http, env.url)
                series.append((t, c))
                if c != last_counts:
                    last_change, last_counts = time.monotonic(), c
                elif time.monotonic() - last_change > env.cfg.stall_s:
                    break  # nothing moved for stall_s: stuck (reported below)
                if c.get("history", 0) >= n:
                    history_done_at = history_done_at or t
                    covisit_total = await _covisit_total(offsets, covisit_topic, s.covisit_partitions)
                    if (
                        c.get("engagement", 0) >= n
                        and c.get("covisit", 0) >= covisit_total
                        and t - history_done_at > 0.5
                    ):
                        break
                if time.monotonic() > next_line:
                    next_line += 5
                    say(
                        f"  ingest: history {c.get('history', 0):,.0f} / engagement "
                        f"{c.get('engagement', 0):,.0f} / covisit {c.get('covisit', 0):,.0f} of {n:,} events"
                    )
                await asyncio.sleep(env.cfg.metrics_poll_s)
    finally:
        await offsets.stop()
    last = series[-1][1] if series else {}
    if covisit_total is None or last.get("engagement", 0) < n or last.get("covisit", 0) < covisit_total:
        return {
            "error": f"not done (deadline {timeout:.0f} s, or no progress for {env.cfg.stall_s:.0f} s): "
            f"{last}, covisit total {covisit_total}"
        }

    def col(agent: str) -> list[tuple[float, float]]:
        return [(t, c.get(agent, 0.0)) for t, c in series]

    hist = col("history")
    started = next(((t, v) for t, v in hist if v > 0), None)
    assert started is not None
    t_first, n_first = started
    t_hist = _crossing(hist, n)
    t_eng = _crossing(col("engagement"), n)
    t_cov = _crossing(col("covisit"), covisit_total)
    t_end = max(t_eng, t_cov)
    t10, t90 = _crossing(hist, 0.1 * n), _crossing(hist, 0.9 * n)
    if t_hist <= t_first:
        return {"error": f"finished before the second poll: use more events than {n}"}
    return {
        "history_events_per_s": r((n - n_first) / (t_hist - t_first), 0),
        "pipeline_events_per_s": r((n - n_first) / (t_end - t_first), 0),
        "history_steady_events_per_s": r(0.8 * n / (t90 - t10), 0) if t90 > t10 else None,
        "history_seconds": r(t_hist - t_first, 3),
        "pipeline_seconds": r(t_end - t_first, 3),
        "engagement_lag_s": r(t_eng - t_hist, 3),
        "covisit_lag_s": r(t_cov - t_hist, 3),
        "covisit_messages": covisit_total,
        "dead_letters": last.get("dead_letters", 0),
        "polls": len(series),
        "excluded_first_batch": n_first,
    }


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
                out[name] = round(total / n, 3)
    finally:
        await consumer.stop()
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]))
    out["total"] = round(sum(out.values()), 3)
    return out


def stage_ingest(env: BenchEnv) -> dict[str, Any]:
    cfg, cluster = env.cfg, env.cluster
    assert cluster is not None
    timeout = cfg.stage_timeout_s
    say(f"ingest 1/5: catalog of {cfg.videos:,} videos through a first worker (state for later stages)")
    from recstream.kafka_admin import ensure_topics

    asyncio.run(ensure_topics(env.settings))
    asyncio.run(_produce_catalog(env))
    cluster.start_worker(env.port)
    if not asyncio.run(_wait_counter(env.url, "catalog", cfg.videos, timeout=120)):
        raise RuntimeError("the catalog was not processed in 120 s")
    cluster.stop()  # the next worker is fresh: it starts with the catalog loaded and no event consumed

    say(
        f"ingest 2/5: producing {cfg.events:,} simulated events ({cfg.users:,} users) to "
        f"{topic_names(env.settings).interactions}"
    )
    produced = asyncio.run(_produce_events(env))
    say(
        f"  produced {produced['events']:,} events from {produced['users']:,} users "
        f"in {produced['seconds']} s"
    )

    say("ingest 3/5: peer: raw AIOKafkaConsumer reads them all")
    raw = asyncio.run(_raw_consume(env.settings, cfg.events, validate=False, timeout=timeout))
    say(f"  raw aiokafka: {raw.get('events_per_s') or raw}")
    say("ingest 4/5: reference: raw AIOKafkaConsumer + pydantic validation of each message")
    raw_validate = asyncio.run(_raw_consume(env.settings, cfg.events, validate=True, timeout=timeout))
    say(f"  raw aiokafka + validate: {raw_validate.get('events_per_s') or raw_validate}")

    say("ingest 5/5: a fresh worker processes them all (rate from its /metrics counters)")
    started = time.perf_counter()
    cluster.start_worker(env.port)
    startup = time.perf_counter() - started
    with Profiler(env, "ingest"):
        worker = asyncio.run(_watch_ingest(env, cfg.ingest_timeout_s))
    say(
        f"  worker: history {worker.get('history_events_per_s')} events/s, end of pipeline "
        f"{worker.get('pipeline_events_per_s')} events/s"
        if "error" not in worker
        else f"  worker: {worker}"
    )
    written = asyncio.run(_messages_per_event(env.settings, cfg.events))
    say(f"  Kafka messages written per event: {written}")
    return {
        "produced": produced,
        "raw_aiokafka": raw,
        "raw_aiokafka_validate": raw_validate,
        "worker": worker,
        "worker_startup_s": r(startup, 2),
        "kafka_messages_per_event": written,
    }


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
            from recstream.devcluster import get

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
    from recstream.devcluster import get

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
    for step, (mode, key) in enumerate(
        (("static", "bare_aiohttp"), ("recommend", "bare_aiohttp_recommend")), 2
    ):
        say(f"http {step}/3: peer: bare aiohttp ({mode})")
        proc, base = _start_bare(env, mode)
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
    misses: list[dict[str, Any]] = []
    deadline = time.monotonic() + cfg.stage_timeout_s
    try:
        async with aiohttp.ClientSession() as http:

            async def recs(user: str) -> list[dict]:
                async with http.get(f"{env.url}/recommendations/{user}?k={cfg.http_k}") as resp:
                    return (await resp.json())["items"]

            async def similar(video: str) -> list[str]:
                async with http.get(f"{env.url}/videos/{video}/similar?k=50") as resp:
                    return [i["video_id"] for i in (await resp.json())["items"]]

            await asyncio.sleep(0.5)  # the listener has its partitions
            for user in itertools.cycle(users):
                if len(samples) >= cfg.freshness_samples or time.monotonic() > deadline:
                    break
                if skipped > 10 * cfg.freshness_samples:
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
                t_gone = t_done = None
                while time.perf_counter() - t0 < cfg.freshness_timeout_s:
                    items = await recs(user)
                    t = time.perf_counter()
                    gone = all(i["video_id"] != target for i in items)
                    if gone and t_gone is None:
                        t_gone = t
                    if gone and any(because in i["reasons"] for i in items):
                        t_done = t
                        break
                    await asyncio.sleep(cfg.freshness_poll_s)
                await asyncio.sleep(0.05)  # the listener records the delivery; samples do not overlap
                arrived = arrivals.get((user, target, event.ts))
                sample = {
                    "effect_ms": (t_done - t0) * 1000 if t_done else None,
                    "gone_ms": (t_gone - t0) * 1000 if t_gone else None,
                    "ack_ms": (acked[0] - t0) * 1000 if acked else None,
                    "kafka_delivery_ms": (arrived - t0) * 1000 if arrived else None,
                }
                samples.append(sample)
                if t_done is None and len(misses) < 5:
                    # Diagnose: where does the first item credited to the video rank in a longer list?
                    async with http.get(f"{env.url}/recommendations/{user}?k=500") as resp:
                        wide = (await resp.json())["items"]
                    rank = next((n + 1 for n, i in enumerate(wide) if because in i["reasons"]), None)
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
        "effect": stats("effect_ms"),
        "seen_video_gone": stats("gone_ms"),
        "kafka_delivery": stats("kafka_delivery_ms"),
        "producer_ack": stats("ack_ms"),
        "poll_interval_ms": cfg.freshness_poll_s * 1000,
    }


def stage_freshness(env: BenchEnv) -> dict[str, Any]:
    say(f"freshness: {env.cfg.freshness_samples} events, one at a time, until each shows in that user's list")
    out = asyncio.run(_freshness(env))
    e = out["effect"]
    say(
        f"  freshness: p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms over {e['n']} of {out['samples']} samples "
        f"(no neighbour in the top {env.cfg.http_k}: {out['no_neighbour_in_top_k']}, video not gone: "
        f"{out['not_gone']}); Kafka delivery p50 {out['kafka_delivery']['p50_ms']} ms"
    )
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
        if "http" in cfg.stages:
            results["http"] = stage_http(env)
        if "freshness" in cfg.stages:
            results["freshness"] = stage_freshness(env)
        if env.profiles:
            results["profile"] = env.profiles
    return results
