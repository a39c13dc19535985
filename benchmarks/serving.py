"""The serving benchmark: `recstream web` (1 and 2 processes) against bare aiohttp, idle and under ingest.

    .venv/bin/python benchmarks/serving.py            # 100,000 videos, 200,000 users, 10 s of wrk per target
    .venv/bin/python benchmarks/serving.py --quick    # 10,000 videos, 20,000 users, 3 s: checks the harness
    .venv/bin/python benchmarks/run.py --only serving # the same, then the README block

Everything runs on this machine against real processes: a private `redis-server` on a free port (the
streaming benchmark's helper), the local Kafka broker and MongoDB (`recstream services up`), `recstream
web` server processes, a `recstream worker` (`recstream.devtools.devcluster.Cluster`: its own topics, app id,
MongoDB database) and Debian's `wrk`. Nothing is mocked.

1. seed: the serving state written straight into Redis through recstream's own write functions
   (`Stores.write_catalog`, `write_user_state`, `write_neighbours`, `write_video_stats`; the ALS model
   through `model_store.ModelRegistry.register` + `activate`), in chunks: a catalog (a small share
   published within the last day: "fresh"), users with histories (new: none; light: 1-5 entries; heavy:
   50, with older seen videos beyond them), item-CF neighbour lists, trending ranks, and a rank-64 ALS
   model (random float32 factors) over the users with a history and every video. Popularity is Zipf
   over a seeded permutation of the videos (numpy, seeded).
2. http: `wrk -t2 -c16 --latency` with a Lua script walking a file of user ids (the same mix of new,
   light and heavy users), `GET /recommendations/{user}?k=20`, against `recstream web` with 1 and with 2
   processes, and the bare aiohttp static handler (`bare_aiohttp.py --mode static`) with 1 and 2
   processes sharing the port (SO_REUSEPORT): req/s, p50, p99, errors; the 2-process scaling of
   recstream relative to bare aiohttp's.
3. under ingest: a `recstream worker` and a separate producer process writing interactions of the
   seeded users and videos at 2,000 events/s to the worker's topic; meanwhile the 1-process web role
   under the same wrk load, then freshness: one view at a time POSTed to the worker's `/events` for a
   video at the top of that user's list, timed until the web role's list no longer shows it (and, in
   parallel, until the worker wrote it to `hist:{user}` in Redis: the pipeline's share of that time).

Bounded: every loop stops after its count or its deadline. Every process started here is stopped at the
end, also on error or SIGTERM. Writes `benchmarks/results/serving.json` and `serving.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from streaming import (  # noqa: E402
    PrivateRedis,
    _counters,
    _faust_dirs,
    find_py_spy,
    pct,
    r,
    say,
    summarise_profile,
)

from recstream.devtools.devcluster import Cluster, delete_topics, free_port, get  # noqa: E402
from recstream.settings import Settings, get_settings  # noqa: E402

TARGETS = {
    "requests_per_s": 3_000,  # /recommendations?k=20, one web process, c=16
    "p99_ms": 15.0,
    "scaling_vs_bare": 0.8,  # (recstream 2 processes / 1) / (bare aiohttp 2 / 1)
    "freshness_p99_ms": 500.0,  # POST /events view -> the video gone from the web role's list
}


@dataclass
class ServingConfig:
    videos: int = 100_000
    users: int = 200_000
    new_share: float = 0.30
    """Users with no history at all (served trending and fresh videos)."""
    heavy_share: float = 0.20
    """Users with a full history (`heavy_history` entries); the rest are light (1-5 entries)."""
    heavy_history: int = 50
    heavy_extra_seen: int = 0
    """Heavy users also saw this many older videos (in their seen filter, no longer in their history).
    0 by default: the seen filter is a fixed-size Bloom filter, so its size costs serving nothing, and
    each video costs `seen_bloom_hashes` SETBITs to seed."""
    zipf: float = 1.1
    """Exponent of video popularity (histories, neighbours, trending, the ingest load)."""
    creators: int = 0
    """0: one creator per 20 videos."""
    catalog_age_days: float = 30.0
    fresh_share: float = 0.02
    """Videos published within the last day (the fresh source)."""
    neighbour_share: float = 0.9
    """Videos with an item-CF neighbour list."""
    neighbours_min: int = 20
    neighbours_max: int = 50
    """The co-visitation agent materialises each list's best `serving_neighbours_per_video` (50), so
    longer seeded lists would only cost Redis memory and seeding time, never serving work."""
    trending_share: float = 0.8
    """Videos with a trending rank."""
    als_rank: int = 64
    model_age_s: float = 3600.0
    """The model was trained on data up to this long ago (newer history entries are folded in)."""
    seed: int = 42
    chunk: int = 5_000
    """Users, videos or neighbour lists per Redis call while seeding."""

    request_users: int = 20_000
    """The wrk users file: this many seeded users (the seeded mix), in a seeded random order."""
    http_seconds: int = 10
    http_warmup_s: int = 2
    threads: int = 2
    concurrency: int = 16
    k: int = 20
    wrk_timeout_s: int = 5

    ingest_rate: float = 2_000.0
    """Events/s a separate process produces to the worker's interactions topic during step 3."""
    ingest_warmup_s: float = 3.0
    freshness_samples: int = 100  # the p99 of 100 is about the second worst; of 30 it was the worst
    freshness_timeout_s: float = 5.0
    freshness_poll_s: float = 0.005

    server: str = "auto"
    """auto | web | worker: `recstream web` (auto: when `recstream web --help` works) or, before the web
    role exists, `recstream worker`'s own views (1 process only)."""
    ready_timeout_s: float = 180.0
    """How long a server may take to answer /health with 200 (the web role loads its state first)."""
    stage_timeout_s: float = 900.0
    worker_log_level: str = "info"
    profile: bool = False
    """After the measured 1-process run, one more wrk run with py-spy attached to the web process
    (not counted: sampling slows it); where its CPU goes, in serving.json ("profile")."""
    keep: bool = False
    quick: bool = False


QUICK = {
    "videos": 10_000,
    "users": 20_000,
    "request_users": 5_000,
    "http_seconds": 3,
    "http_warmup_s": 1,
    "ingest_warmup_s": 2.0,
    "freshness_samples": 20,
}


def vid(i: int) -> str:
    return f"v{i}"


def uid(i: int) -> str:
    return f"u{i}"


# --------------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------------
class Env:
    """Private Redis, an isolated Cluster (topics, app id, MongoDB database), and every process the run
    starts; `close()` stops them all (idempotent)."""

    def __init__(self, cfg: ServingConfig) -> None:
        self.cfg = cfg
        self.root = Path(tempfile.mkdtemp(prefix="recstream-serving-"))
        self.redis = PrivateRedis(self.root / "redis")
        self.cluster: Cluster | None = None
        self.servers: list[subprocess.Popen] = []
        self.background: Background | None = None
        self.worker_started = False

    def start(self) -> None:
        self.redis.start()
        base = get_settings().model_copy(update={"redis_url": self.redis.url})
        # Cluster() flushes its Redis DB: created before seeding, its worker started only in step 3.
        self.cluster = Cluster(base, self.root / "data", redis_db=0, log_level=self.cfg.worker_log_level)
        _faust_dirs(self.cluster)

    @property
    def settings(self) -> Settings:
        assert self.cluster is not None
        return self.cluster.settings

    def close(self) -> None:
        if self.background is not None:
            with contextlib.suppress(Exception):
                self.background.stop()
        for proc in self.servers:
            stop_group(proc)
        if self.cluster is not None:
            self.cluster.stop()
            if not self.cfg.keep and self.worker_started:
                with contextlib.suppress(Exception):
                    asyncio.run(delete_topics(self.cluster.settings))
            if not self.cfg.keep:
                with contextlib.suppress(Exception):
                    import pymongo

                    client = pymongo.MongoClient(self.settings.mongo_url, serverSelectionTimeoutMS=3000)
                    client.drop_database(self.settings.mongo_db)
                    client.close()
        if self.redis.proc is not None and self.redis.proc.poll() is None and not self.cfg.keep:
            with contextlib.suppress(redis.RedisError):
                redis.Redis(port=self.redis.port, socket_timeout=30).flushall()
        self.redis.stop()
        if self.cfg.keep:
            say(
                f"kept {self.root} (logs, Redis AOF), the topics {self.settings.topic_prefix}.* and "
                f"MongoDB database {self.settings.mongo_db}"
            )
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM to a process group we started (start_new_session), then SIGKILL past `timeout`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Server processes it forked may outlive a parent that exited first: same group, same fate.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp (field 5 of stat; fields here start at state, field 3)
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def group_size(pgid: int) -> tuple[int, float]:
    """(processes, their resident memory in MB) of a process group."""
    n, rss_kb = 0, 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    n += 1
                    for line in (entry / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            rss_kb += int(line.split()[1])
    return n, round(rss_kb / 1024, 1)


# --------------------------------------------------------------------------------------------------
# 1. seed
# --------------------------------------------------------------------------------------------------
@dataclass
class World:
    """What was seeded, as far as the later steps need it."""

    now_ms: int
    popularity: np.ndarray  # P(video i) in histories, neighbours and the ingest load
    duration_ms: np.ndarray
    user_class: np.ndarray  # 0 new, 1 light, 2 heavy
    counts: dict[str, Any] = field(default_factory=dict)


def _unique_rows(
    draws: np.ndarray,
    lengths: np.ndarray,
    exclude: np.ndarray | None,
    rng: np.random.Generator,
    n_videos: int,
) -> list[np.ndarray]:
    """Per row: the distinct draws in first-drawn order, cut to that row's length (topped up with
    uniform picks in the rare row that drew too few); `exclude[i]` never appears in row i."""
    out = []
    for i, row in enumerate(draws):
        values, first = np.unique(row, return_index=True)
        picked = values[np.argsort(first)]
        if exclude is not None:
            picked = picked[picked != exclude[i]]
        n = min(int(lengths[i]), n_videos - 1)
        for _ in range(1000):  # bounded; each round adds about n fresh videos
            if len(picked) >= n:
                break
            extra = rng.integers(0, n_videos, n)
            extra = extra[~np.isin(extra, picked)]
            if exclude is not None:
                extra = extra[extra != exclude[i]]
            picked = np.concatenate([picked, np.unique(extra)])
        out.append(picked[:n])
    return out


async def _seed(env: Env) -> World:
    from recstream import scoring
    from recstream.records import Video
    from recstream.serving.stores import Stores

    cfg, settings = env.cfg, env.settings
    rng = np.random.default_rng(cfg.seed)
    now = int(time.time() * 1000)
    n_v, n_u = cfg.videos, cfg.users
    ids = np.array([vid(i) for i in range(n_v)], dtype=object)
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {}

    # Popularity: Zipf over a seeded permutation (the most popular video is not v0).
    weights = np.arange(1, n_v + 1, dtype=np.float64) ** -cfg.zipf
    popularity = np.empty(n_v)
    popularity[rng.permutation(n_v)] = weights / weights.sum()
    cdf = np.cumsum(popularity)
    cdf[-1] = 1.0

    def draw(shape: tuple[int, ...], p_cdf: np.ndarray = cdf) -> np.ndarray:
        return np.minimum(np.searchsorted(p_cdf, rng.random(shape), side="right"), n_v - 1)

    stores = Stores(settings)
    pending: list[asyncio.Task] = []

    async def submit(write: Any) -> None:
        """At most one write in flight while the next chunk is generated (Redis works meanwhile)."""
        while pending:
            await pending.pop()
        pending.append(asyncio.ensure_future(write))

    async def drain() -> None:
        while pending:
            await pending.pop()

    try:
        # --- the catalog, the shape the catalog agent writes (Video.model_dump()) ---
        t0 = time.perf_counter()
        n_creators = cfg.creators or max(1, n_v // 20)
        creator_weights = np.arange(1, n_creators + 1, dtype=np.float64) ** -0.8
        creator_of = rng.choice(n_creators, n_v, p=creator_weights / creator_weights.sum())
        duration = rng.integers(5_000, 90_000, n_v)
        fresh = rng.random(n_v) < cfg.fresh_share
        day = 86_400_000
        age = np.where(
            fresh,
            rng.integers(60_000, day - 3_600_000, n_v),
            rng.integers(day, int(cfg.catalog_age_days * day), n_v),
        )
        categories = ["comedy", "music", "dance", "food", "travel", "sports", "pets", "gaming", "news", "diy"]
        for start in range(0, n_v, cfg.chunk * 2):
            docs = {}
            for i in range(start, min(n_v, start + cfg.chunk * 2)):
                docs[vid(i)] = {
                    "video_id": vid(i),
                    "creator_id": f"c{creator_of[i]}",
                    "duration_ms": int(duration[i]),
                    "category": categories[i % len(categories)],
                    "hashtags": [f"#{categories[i % len(categories)]}", f"#tag{i % 97}"],
                    "caption": f"video {i}",
                    "created_at": int(now - age[i]),
                }
            if start == 0:  # the same document the catalog agent writes, field for field
                first = next(iter(docs.values()))
                assert Video(**first).model_dump() == first, "catalog document shape drifted from Video"
            await submit(stores.write_catalog(docs))
        await drain()
        timings["catalog_s"] = time.perf_counter() - t0
        counts.update(videos=n_v, creators=n_creators, fresh_videos=int(fresh.sum()))

        # --- users: new (nothing), light (1-5 entries), heavy (a full history, and older seen videos) ---
        t0 = time.perf_counter()
        user_class = rng.choice(
            3, n_u, p=[cfg.new_share, 1 - cfg.new_share - cfg.heavy_share, cfg.heavy_share]
        )
        lengths = np.where(user_class == 2, cfg.heavy_history, rng.integers(1, 6, n_u))
        lengths[user_class == 0] = 0
        entries = 0
        for start in range(0, n_u, cfg.chunk):
            stop = min(n_u, start + cfg.chunk)
            histories, seen = {}, {}
            light = [u for u in range(start, stop) if user_class[u] == 1]
            heavy = [u for u in range(start, stop) if user_class[u] == 2]
            want = {1: lengths[light], 2: lengths[heavy] + cfg.heavy_extra_seen}
            picked_rows: list[tuple[int, np.ndarray]] = []
            for cls, rows in ((1, light), (2, heavy)):
                if rows:  # draws with replacement, about twice what is needed: Zipf repeats the head a lot
                    width = int(want[cls].max()) * 2 + 20
                    picked_rows += zip(
                        rows, _unique_rows(draw((len(rows), width)), want[cls], None, rng, n_v), strict=True
                    )
            for u, videos in picked_rows:
                n = int(lengths[u])
                # Newest first: last active within the past week, one engagement every few minutes before.
                newest = now - int(rng.exponential(2 * day))
                gaps = np.cumsum(rng.exponential(300_000, n)).astype(np.int64)
                kind = rng.random(n)
                weight = np.where(kind < 0.12, -0.5, np.round(rng.uniform(0.1, 2.0, n), 4))
                weight = np.where((kind > 0.8) & (weight > 0), weight + 1.0, weight)  # a like on top
                histories[uid(u)] = [
                    [ids[v], int(newest - g), float(w)]
                    for v, g, w in zip(videos[:n].tolist(), gaps.tolist(), weight.tolist(), strict=True)
                ]
                seen[uid(u)] = {ids[v] for v in videos.tolist()}
                entries += n
            if histories:
                await submit(stores.write_user_state(histories, seen))
        await drain()
        timings["users_s"] = time.perf_counter() - t0
        counts.update(
            users=n_u,
            new_users=int((user_class == 0).sum()),
            light_users=int((user_class == 1).sum()),
            heavy_users=int((user_class == 2).sum()),
            history_entries=int(entries),
        )

        # --- item-CF neighbours: neighbours_min-max per video, half popularity, half uniform; shares summing to 1 ---
        t0 = time.perf_counter()
        nbr_cdf = np.cumsum(0.5 * popularity + 0.5 / n_v)
        nbr_cdf[-1] = 1.0
        with_lists = np.flatnonzero(rng.random(n_v) < cfg.neighbour_share)
        pairs = 0
        for start in range(0, len(with_lists), cfg.chunk):
            src = with_lists[start : start + cfg.chunk]
            sizes = rng.integers(cfg.neighbours_min, cfg.neighbours_max + 1, len(src))
            picks = _unique_rows(
                draw((len(src), int(cfg.neighbours_max * 1.6) + 20), nbr_cdf), sizes, src, rng, n_v
            )
            lists = {}
            for s, nb in zip(src.tolist(), picks, strict=True):
                w = np.sqrt(popularity[nb]) * rng.lognormal(0.0, 1.0, len(nb))
                w /= w.sum()
                lists[ids[s]] = list(zip(ids[nb].tolist(), w.tolist(), strict=True))
                pairs += len(nb)
            await submit(stores.write_neighbours(lists))
        await drain()
        timings["neighbours_s"] = time.perf_counter() - t0
        counts.update(videos_with_neighbours=int(len(with_lists)), neighbour_pairs=int(pairs))

        # --- trending ranks: log2(weight) + t/half_life (scoring.add_trend_rank's key) ---
        t0 = time.perf_counter()
        trending = np.flatnonzero(
            (rng.random(n_v) < cfg.trending_share) | (popularity >= np.quantile(popularity, 0.9))
        )
        total = popularity[trending] * 1e6 * rng.lognormal(0.0, 0.5, len(trending))
        last_ms = now - rng.exponential(6 * 3600 * 1000, len(trending)).astype(np.int64)
        half_life = settings.trending_half_life_s
        for start in range(0, len(trending), cfg.chunk * 4):
            part = slice(start, start + cfg.chunk * 4)
            ranks = {
                ids[v]: scoring.add_trend_rank(None, max(float(w), 1e-3), int(t), half_life)
                for v, w, t in zip(
                    trending[part].tolist(), total[part].tolist(), last_ms[part].tolist(), strict=True
                )
            }
            await submit(stores.write_video_stats({}, ranks))
        await drain()
        timings["trending_s"] = time.perf_counter() - t0
        counts["trending_videos"] = int(len(trending))
    finally:
        for task in pending:
            task.cancel()
        await stores.close()

    # --- the ALS model: random float32 factors, registered and activated like a trained one ---
    t0 = time.perf_counter()
    counts["model"] = _publish_model(env, rng, user_class, ids, now)
    timings["model_s"] = time.perf_counter() - t0

    # The bulk load grew the AOF a lot: rewrite it now, so no automatic rewrite (a fork and a full
    # dump) lands in a measurement later.
    t0 = time.perf_counter()
    client = redis.Redis.from_url(settings.redis_url)
    with contextlib.suppress(redis.ResponseError):  # "already in progress"
        client.bgrewriteaof()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            break
        time.sleep(0.2)
    timings["aof_rewrite_s"] = time.perf_counter() - t0
    counts["redis_used_memory_mb"] = round(client.info("memory")["used_memory"] / 2**20, 1)
    counts["redis_keys"] = client.dbsize()
    client.close()
    counts["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    return World(
        now_ms=now, popularity=popularity, duration_ms=duration, user_class=user_class, counts=counts
    )


def _publish_model(
    env: Env, rng: np.random.Generator, user_class: np.ndarray, ids: np.ndarray, now: int
) -> dict[str, Any]:
    from recstream.serving.model_store import ModelArtifact, ModelRegistry, new_version

    cfg = env.cfg
    users = [uid(u) for u in np.flatnonzero(user_class > 0).tolist()]
    rank = cfg.als_rank
    version = new_version(now)
    meta = {
        "created_at": now,
        "params": {"rank": rank, "note": "serving benchmark: random factors"},
        "metrics": {},
        "reg_param": 0.01,
        "alpha": 10.0,
        "data_until_ms": int(now - cfg.model_age_s * 1000),
    }
    artifact = ModelArtifact(
        version=version,
        user_ids=users,
        item_ids=ids.tolist(),
        user_factors=(rng.standard_normal((len(users), rank), dtype=np.float32) * 0.1),
        item_factors=(rng.standard_normal((len(ids), rank), dtype=np.float32) * 0.1),
        meta=meta,
    )
    registry = ModelRegistry(env.settings)
    try:
        registry.ensure_indexes()
        t0 = time.perf_counter()
        registry.register(artifact, {**meta, "status": "active"})
        register_s = time.perf_counter() - t0
        registry.activate(artifact)
        active = registry.active_version()
    finally:
        registry.close()
    if active != version:
        raise RuntimeError(f"model {version} not active after activate(): {active}")
    return {
        "version": version,
        "rank": rank,
        "users": len(users),
        "videos": len(ids),
        "mongo_register_s": round(register_s, 2),
    }


def _users_file(env: Env, world: World) -> tuple[Path, dict[str, int], list[str]]:
    """The wrk users file: `request_users` seeded users, in a seeded random order (the seeded mix)."""
    rng = np.random.default_rng(env.cfg.seed + 1)
    n = min(env.cfg.request_users, env.cfg.users)
    chosen = rng.choice(env.cfg.users, n, replace=False)
    users = [uid(u) for u in chosen.tolist()]
    path = env.root / "users.txt"
    path.write_text("\n".join(users) + "\n")
    names = {0: "new", 1: "light", 2: "heavy"}
    mix = Counter(names[int(c)] for c in world.user_class[chosen])
    return path, dict(mix), users


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------
def web_role_available() -> bool:
    exe = Path(sys.executable).parent / "recstream"
    try:
        out = subprocess.run([str(exe), "web", "--help"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "--processes" in out.stdout


def start_server(env: Env, kind: str, processes: int) -> dict[str, Any]:
    """Start a server on a free port and wait until /health answers 200 from every process (new
    connections are spread over SO_REUSEPORT sockets by the kernel: 8 in a row must all be 200)."""
    assert env.cluster is not None
    port = free_port()
    log = env.root / f"{kind}-{processes}p-{port}.log"
    if kind == "web":
        cmd = [
            str(Path(sys.executable).parent / "recstream"),
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--processes",
            str(processes),
        ]
    elif kind == "bare":
        cmd = [
            sys.executable,
            str(HERE / "bare_aiohttp.py"),
            "--port",
            str(port),
            "--mode",
            "static",
            "--k",
            str(env.cfg.k),
            "--processes",
            str(processes),
            "--max-seconds",
            str(int(env.cfg.stage_timeout_s)),
        ]
    else:
        raise ValueError(kind)
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env={**env.cluster.env, "RECSTREAM_LOG_LEVEL": "info"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    env.servers.append(proc)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + env.cfg.ready_timeout_s
    in_a_row, last = 0, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd[:2])} exited ({proc.returncode}); log {log}:\n{_tail(log)}")
        try:
            status, body = get(base + "/health")
            last = (status, body)
            in_a_row = in_a_row + 1 if status == 200 else 0
        except OSError as exc:
            in_a_row, last = 0, (None, str(exc))
        if in_a_row >= (8 if processes > 1 else 1):
            n, rss = group_size(proc.pid)
            return {
                "proc": proc,
                "base": base,
                "log": log,
                "ready_s": round(time.perf_counter() - t0, 2),
                "health": last[1],
                "processes_in_group": n,
                "rss_mb": rss,
            }
        time.sleep(0.1)
    raise RuntimeError(
        f"{' '.join(cmd[:2])} not healthy in {env.cfg.ready_timeout_s:.0f} s (last /health: "
        f"{str(last)[:300]}); log {log}:\n{_tail(log)}"
    )


def _tail(path: Path, n: int = 2500) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-n:]
    return ""


def stop_server(env: Env, server: dict[str, Any]) -> None:
    stop_group(server["proc"])
    with contextlib.suppress(ValueError):
        env.servers.remove(server["proc"])


def sanity(base: str, users: list[str], classes: dict[str, int], k: int) -> dict[str, Any]:
    """A few answers per user class: status, list length, reasons, the model version."""
    out: dict[str, Any] = {}
    for name, picked in _by_class(users, classes).items():
        sizes, reasons, versions, statuses = [], Counter(), Counter(), Counter()
        for user in picked:
            status, body = get(f"{base}/recommendations/{user}?k={k}")
            statuses[status] += 1
            if status != 200:
                continue
            sizes.append(len(body.get("items", [])))
            versions["set" if body.get("model_version") else "none"] += 1
            for item in body.get("items", []):
                for reason in item.get("reasons", []):
                    reasons["itemcf" if reason.startswith("because") else reason] += 1
        out[name] = {
            "statuses": dict(statuses),
            "mean_items": r(sum(sizes) / len(sizes), 1) if sizes else None,
            "reasons": dict(reasons),
            "model_version": dict(versions),
        }
    bad = {n: d["statuses"] for n, d in out.items() if set(d["statuses"]) != {200}}
    if bad:
        raise RuntimeError(f"GET /recommendations did not answer 200: {bad}")
    return out


def _by_class(users: list[str], classes: dict[str, int], per_class: int = 10) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"new": [], "light": [], "heavy": []}
    for user in users:
        name = {0: "new", 1: "light", 2: "heavy"}[classes[user]]
        if len(out[name]) < per_class:
            out[name].append(user)
    return out


# --------------------------------------------------------------------------------------------------
# 2. wrk
# --------------------------------------------------------------------------------------------------
WRK_LUA = r"""
-- Each thread walks the users file in order from its own starting point (wrapping around):
-- GET /recommendations/{user}?k=K. done() reports the summary as one JSON line.
local ids = {}
for line in io.lines(os.getenv("BENCH_USERS")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local k = os.getenv("BENCH_K") or "20"
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local created = 0

function setup(thread)
  thread:set("tid", created)
  created = created + 1
end

function init(args)
  n = math.floor(#ids * (tid or 0) / threads)
end

function request()
  n = n % #ids + 1
  return wrk.format("GET", "/recommendations/" .. ids[n] .. "?k=" .. k)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""

_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is not installed: apt-get install -y wrk")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
    ):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        if shutil.which("wrk"):
            return shutil.which("wrk") or "wrk"
    raise SystemExit(
        "error: the serving benchmark needs wrk (Debian package `wrk`), and `apt-get install -y wrk` "
        "did not install it: install it, then run again"
    )


def wrk(env: Env, base: str, seconds: int, users_file: Path, pgid: int | None = None) -> dict[str, Any]:
    """`wrk -tT -cC -dS --latency` with the users script; req/s, latency percentiles, errors, and the CPU
    the server's process group and wrk itself used meanwhile."""
    cfg = env.cfg
    lua = env.root / "recommendations.lua"
    lua.write_text(WRK_LUA)
    cmd = [
        "wrk",
        f"-t{cfg.threads}",
        f"-c{cfg.concurrency}",
        f"-d{max(1, int(seconds))}s",
        "--latency",
        "--timeout",
        f"{cfg.wrk_timeout_s}s",
        "-s",
        str(lua),
        base + "/",
    ]
    cpu0 = group_cpu_s(pgid) if pgid else None
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={
            **os.environ,
            "BENCH_USERS": str(users_file),
            "BENCH_K": str(cfg.k),
            "BENCH_THREADS": str(cfg.threads),
        },
    )
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = group_cpu_s(pgid) if pgid else None
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    dist = {f"p{p}_ms": float(v) * _UNIT_MS[u] for p, v, u in _DIST.findall(out.stdout)}
    if line is None or "p99_ms" not in dist:
        return {"error": f"wrk gave no summary (exit {out.returncode}): {(out.stdout + out.stderr)[-600:]}"}
    d = json.loads(line[len("WRKJSON ") :])
    seconds_run = d["duration_us"] / 1e6
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    res = {
        "requests": d["requests"],
        "requests_per_s": r(d["requests"] / seconds_run, 0),
        "p50_ms": r(dist["p50_ms"], 2),
        "p75_ms": r(dist.get("p75_ms"), 2),
        "p90_ms": r(dist.get("p90_ms"), 2),
        "p99_ms": r(dist["p99_ms"], 2),
        "max_ms": r(d["max_us"] / 1000, 2),
        "mean_ms": r(d["mean_us"] / 1000, 2),
        "errors": d["errors"]["connect"]
        + d["errors"]["read"]
        + d["errors"]["write"]
        + d["errors"]["timeout"],
        "non_2xx": int(non_2xx.group(1)) if non_2xx else d["errors"]["status"],
        "error_detail": d["errors"],
        "bytes_per_response": r(d["bytes"] / max(1, d["requests"]), 0),
        "wrk_cpu_s": r((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 2),
        "seconds": r(seconds_run, 2),
    }
    if cpu0 is not None and cpu1 is not None:
        res["server_cpu_s"] = r(cpu1 - cpu0, 2)
        res["server_cpu_ms_per_request"] = r((cpu1 - cpu0) * 1000 / max(1, d["requests"]), 3)
        res["server_cores_busy"] = r((cpu1 - cpu0) / wall, 2)
    return res


def brief(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"error: {d['error'][:300]}"
    return (
        f"{d['requests_per_s']:,.0f} req/s, p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, errors {d['errors']}, "
        f"non-2xx {d['non_2xx']}, server CPU {d.get('server_cores_busy')} cores"
    )


def measure(
    env: Env, kind: str, processes: int, users_file: Path, users: list[str], classes: dict[str, int]
) -> dict[str, Any]:
    cfg = env.cfg
    server = start_server(env, kind, processes)
    try:
        out: dict[str, Any] = {
            "processes": processes,
            "ready_s": server["ready_s"],
            "processes_in_group": server["processes_in_group"],
            "rss_mb_when_ready": server["rss_mb"],
        }
        if kind != "bare":
            out["sample_answers"] = sanity(server["base"], users, classes, cfg.k)
            out["health"] = server["health"]
        if cfg.http_warmup_s:
            wrk(env, server["base"], cfg.http_warmup_s, users_file)
        out.update(wrk(env, server["base"], cfg.http_seconds, users_file, server["proc"].pid))
        out["log_tail"] = _tail(server["log"], 1500) if kind != "bare" else ""
        if cfg.profile and kind == "web" and processes == 1:
            out["profile"] = profile(env, server, users_file)
        return out
    finally:
        stop_server(env, server)


def profile(env: Env, server: dict[str, Any], users_file: Path) -> dict[str, Any]:
    """py-spy (--gil: Python CPU time only, 100 Hz) on the server process during one more wrk run."""
    binary = find_py_spy(None)
    if not binary:
        return {"error": "py-spy not found (.venv/bin/pip install py-spy)"}
    out_file = env.root / "profile-web.txt"
    spy = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(server["proc"].pid),
            "--rate",
            "100",
            "--gil",
            "--format",
            "raw",
            "--output",
            str(out_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)  # attached before the load starts
        run = wrk(env, server["base"], env.cfg.http_seconds, users_file)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stop_group(spy)
            err = b""
    if not out_file.exists():
        return {"error": (err or b"").decode(errors="replace")[-500:]}
    summary = summarise_profile(out_file.read_text())
    summary["wrk_while_sampled"] = {k: run.get(k) for k in ("requests_per_s", "p50_ms", "p99_ms")}
    return summary


# --------------------------------------------------------------------------------------------------
# 3. under ingest: background producer, wrk, freshness
# --------------------------------------------------------------------------------------------------
def _produce_child(
    bootstrap: str,
    topic: str,
    partitions: int,
    rate: float,
    max_s: float,
    seed: int,
    popularity: np.ndarray,
    duration_ms: np.ndarray,
    n_users: int,
    stop: Any,
    out: Any,
    acked: Any,
) -> None:
    try:
        out.put(
            asyncio.run(
                _produce(
                    bootstrap,
                    topic,
                    partitions,
                    rate,
                    max_s,
                    seed,
                    popularity,
                    duration_ms,
                    n_users,
                    stop,
                    acked,
                )
            )
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put({"error": f"{type(exc).__name__}: {exc}"})


async def _produce(
    bootstrap: str,
    topic: str,
    partitions: int,
    rate: float,
    max_s: float,
    seed: int,
    popularity: np.ndarray,
    duration_ms: np.ndarray,
    n_users: int,
    stop: Any,
    acked: Any,
) -> dict[str, Any]:
    """Interactions of seeded users (uniform) on seeded videos (by popularity), stamped now, keyed and
    partitioned by user as Kafka's default partitioner would, at `rate`/s in 20 ms steps. `acked` (a
    shared counter) follows how many Kafka acknowledged, for the parent's backlog."""
    from aiokafka import AIOKafkaProducer

    from recstream.kafka.batches import partition_for
    from recstream.records import Interaction, encode, now_ms

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(popularity)
    cdf[-1] = 1.0
    types = np.array(["view", "like", "share", "comment", "skip"])
    type_p = np.array([0.85, 0.08, 0.02, 0.02, 0.03])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    partition_of: dict[str, int] = {}
    futures: list[asyncio.Future] = []
    sent = 0
    t0 = time.perf_counter()
    try:
        while not stop.is_set() and time.perf_counter() - t0 < max_s:
            due = int((time.perf_counter() - t0) * rate) - sent
            if due > 0:
                users = rng.integers(0, n_users, due)
                videos = np.minimum(np.searchsorted(cdf, rng.random(due), side="right"), len(cdf) - 1)
                kinds = rng.choice(len(types), due, p=type_p)
                ratios = rng.beta(2.0, 1.5, due) * 1.2
                for u, v, kind, ratio in zip(
                    users.tolist(), videos.tolist(), kinds.tolist(), ratios.tolist(), strict=True
                ):
                    user = f"u{u}"
                    t = str(types[kind])
                    duration = int(duration_ms[v])
                    event = Interaction(
                        type=t,
                        user_id=user,
                        video_id=f"v{v}",
                        ts=now_ms(),
                        watch_time_ms=int(duration * ratio) if t == "view" else None,
                        duration_ms=duration if t == "view" else None,
                    )
                    p = partition_of.get(user)
                    if p is None:
                        p = partition_of[user] = partition_for(user.encode(), partitions)
                    future = await producer.send(topic, encode(event), key=user.encode(), partition=p)
                    future.add_done_callback(lambda _f: setattr(acked, "value", acked.value + 1))
                    futures.append(future)
                sent += due
            if len(futures) > 5000:
                await asyncio.gather(*futures)
                futures.clear()
            await asyncio.sleep(0.02)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - t0
    return {"events": sent, "seconds": r(elapsed, 2), "events_per_s": r(sent / elapsed, 0)}


class Background:
    """A separate process producing interactions at a fixed rate until `stop()`; `.result` then."""

    def __init__(self, env: Env, world: World) -> None:
        from recstream.kafka.topics import topic_names

        s = env.settings
        ctx = multiprocessing.get_context("fork")
        self.stop_event, self.out = ctx.Event(), ctx.Queue()
        self.acked = ctx.Value("q", 0, lock=False)  # written by the child only
        self.proc = ctx.Process(
            target=_produce_child,
            args=(
                s.kafka_bootstrap,
                topic_names(s).interactions,
                s.interactions_partitions,
                env.cfg.ingest_rate,
                env.cfg.stage_timeout_s,
                env.cfg.seed + 7,
                world.popularity,
                world.duration_ms,
                env.cfg.users,
                self.stop_event,
                self.out,
                self.acked,
            ),
            daemon=True,
        )
        self.result: dict[str, Any] | None = None

    def start(self) -> None:
        self.proc.start()

    def stop(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result
        self.stop_event.set()
        try:
            self.result = self.out.get(timeout=60)
        except queue.Empty:
            self.result = {"error": "the background producer reported nothing"}
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        return self.result


async def _freshness(env: Env, web_base: str, worker_base: str, users: list[str]) -> dict[str, Any]:
    """One view at a time of the video at the top of a user's list, POSTed to the worker's /events;
    polled on the web role until that list no longer shows it, and on Redis until hist:{user} has it."""
    import redis.asyncio as aioredis

    cfg = env.cfg
    hist = aioredis.from_url(env.settings.redis_url, decode_responses=True)
    samples: list[dict[str, Any]] = []
    skipped = 0
    deadline = time.monotonic() + cfg.stage_timeout_s
    try:
        async with aiohttp.ClientSession() as http:

            async def listed(user: str) -> list[str]:
                async with http.get(f"{web_base}/recommendations/{user}?k={cfg.k}") as resp:
                    resp.raise_for_status()
                    return [i["video_id"] for i in (await resp.json())["items"]]

            for user in users:
                if len(samples) >= cfg.freshness_samples or time.monotonic() > deadline:
                    break
                before = await listed(user)
                if not before:
                    skipped += 1
                    continue
                target = before[0]
                body = {
                    "type": "view",
                    "user_id": user,
                    "video_id": target,
                    "watch_time_ms": 15_000,
                    "duration_ms": 15_000,
                }
                t_redis: list[float] = []

                async def watch_redis(
                    user: str = user, target: str = target, t_redis: list = t_redis
                ) -> None:
                    needle = f'"{target}"'
                    while True:
                        raw = await hist.get(f"hist:{user}")
                        if raw and needle in raw:
                            t_redis.append(time.perf_counter())
                            return
                        await asyncio.sleep(0.002)

                t0 = time.perf_counter()
                watcher = asyncio.create_task(watch_redis())
                async with http.post(f"{worker_base}/events", json=body) as resp:
                    status = resp.status
                t_ack = time.perf_counter()
                t_gone = None
                if status == 202:
                    while time.perf_counter() - t0 < cfg.freshness_timeout_s:
                        items = await listed(user)
                        if target not in items:
                            t_gone = time.perf_counter()
                            break
                        await asyncio.sleep(cfg.freshness_poll_s)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(watcher),
                        max(0.0, cfg.freshness_timeout_s - (time.perf_counter() - t0)),
                    )
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                samples.append(
                    {
                        "user": user,
                        "video": target,
                        "post_status": status,
                        "post_ms": r((t_ack - t0) * 1000, 2),
                        "redis_ms": r((t_redis[0] - t0) * 1000, 2) if t_redis else None,
                        "gone_ms": r((t_gone - t0) * 1000, 2) if t_gone else None,
                    }
                )
    finally:
        await hist.aclose()

    def stats(key: str) -> dict[str, Any]:
        values = [s[key] for s in samples if s[key] is not None]
        return {
            "n": len(values),
            "p50_ms": r(pct(values, 50)),
            "p90_ms": r(pct(values, 90)),
            "p99_ms": r(pct(values, 99)),
            "max_ms": r(max(values, default=None)),
        }

    gone = [s for s in samples if s["gone_ms"] is not None and s["redis_ms"] is not None]
    return {
        "samples": len(samples),
        "skipped_users_with_empty_lists": skipped,
        "timeout_s": cfg.freshness_timeout_s,
        "poll_interval_ms": cfg.freshness_poll_s * 1000,
        "not_gone": sum(1 for s in samples if s["gone_ms"] is None),
        "gone": stats("gone_ms"),
        "redis": stats("redis_ms"),
        "post": stats("post_ms"),
        # What the web role adds after the worker wrote the history: its refresh from Redis.
        "web_after_redis": {
            "n": len(gone),
            "p50_ms": r(pct([s["gone_ms"] - s["redis_ms"] for s in gone], 50)),
            "p99_ms": r(pct([s["gone_ms"] - s["redis_ms"] for s in gone], 99)),
        },
        "sample_list": samples,
    }


def _wait_caught_up(
    worker_url: str, before: dict[str, float], background: Background, rate: float, timeout: float = 60.0
) -> dict[str, Any]:
    """Until the worker's history agent is within ~0.25 s of events of what the producer got acked
    (its backlog drained), or `timeout`: the measurements that follow start from a steady state."""
    t0 = time.perf_counter()
    backlog = None
    while time.perf_counter() - t0 < timeout:
        processed = asyncio.run(_counters(worker_url)).get("history", 0) - before.get("history", 0)
        backlog = int(background.acked.value - processed)
        if backlog <= max(100, rate * 0.25):
            return {"seconds": r(time.perf_counter() - t0, 2), "backlog": backlog, "caught_up": True}
        time.sleep(0.25)
    return {"seconds": r(time.perf_counter() - t0, 2), "backlog": backlog, "caught_up": False}


def stage_under_ingest(
    env: Env, world: World, kind: str, users_file: Path, users: list[str], classes: dict[str, int]
) -> dict[str, Any]:
    from recstream.kafka.admin import ensure_topics

    cfg = env.cfg
    assert env.cluster is not None
    asyncio.run(ensure_topics(env.settings))
    env.worker_started = True
    t0 = time.perf_counter()
    worker = env.cluster.start_worker()
    out: dict[str, Any] = {
        "target_events_per_s": cfg.ingest_rate,
        "worker_ready_s": r(time.perf_counter() - t0, 1),
    }
    server = None
    if kind == "worker":  # before the web role existed: the worker's own views serve
        web_base, pgid = worker.url, (worker.proc.pid if worker.proc else None)
    else:
        server = start_server(env, "web", 1)
        web_base, pgid = server["base"], server["proc"].pid
        out["web_ready_s"] = server["ready_s"]
    try:
        before = asyncio.run(_counters(worker.url))
        t_start = time.perf_counter()
        env.background = Background(env, world)
        env.background.start()
        time.sleep(cfg.ingest_warmup_s)
        out["caught_up_before_wrk"] = _wait_caught_up(worker.url, before, env.background, cfg.ingest_rate)
        if cfg.http_warmup_s:
            wrk(env, web_base, cfg.http_warmup_s, users_file)
        worker_pgid = worker.proc.pid if worker.proc else 0
        w0, t_w0 = group_cpu_s(worker_pgid), time.perf_counter()
        out["http"] = wrk(env, web_base, cfg.http_seconds, users_file, pgid)
        out["worker_cores_busy_during_wrk"] = r(
            (group_cpu_s(worker_pgid) - w0) / (time.perf_counter() - t_w0), 2
        )
        say(f"  under ingest, {kind} 1 process: {brief(out['http'])}")
        if cfg.profile and server is not None:
            out["profile"] = profile(env, server, users_file)
        # The peer under the same load: bare aiohttp, 1 process, the same wrk, while the producer and the
        # worker go on. On a shared host the web process gets what the pipeline leaves; this says how much
        # of the idle -> under-ingest drop is the host's and how much is recstream's.
        out["caught_up_before_bare"] = _wait_caught_up(worker.url, before, env.background, cfg.ingest_rate)
        bare = start_server(env, "bare", 1)
        try:
            w0, t_w0 = group_cpu_s(worker_pgid), time.perf_counter()
            out["bare_http"] = wrk(env, bare["base"], cfg.http_seconds, users_file, bare["proc"].pid)
            out["worker_cores_busy_during_bare_wrk"] = r(
                (group_cpu_s(worker_pgid) - w0) / (time.perf_counter() - t_w0), 2
            )
        except Exception as exc:  # the peer failing must not lose recstream's numbers
            out["bare_http"] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            stop_server(env, bare)
        say(f"  under ingest, bare aiohttp 1 process: {brief(out['bare_http'])}")
        rng = np.random.default_rng(cfg.seed + 3)
        probe_users = [users[i] for i in rng.permutation(len(users))[: cfg.freshness_samples * 3].tolist()]
        # wrk and the web role took CPU from the worker: let it work off what it fell behind first.
        out["caught_up_before_freshness"] = _wait_caught_up(
            worker.url, before, env.background, cfg.ingest_rate
        )
        say(
            f"  the worker caught up with the producer in {out['caught_up_before_freshness']['seconds']} s "
            f"(backlog {out['caught_up_before_freshness']['backlog']})"
        )
        say(
            f"serving 4/5: freshness, {cfg.freshness_samples} views POSTed one at a time to the worker while it "
            f"ingests {cfg.ingest_rate:,.0f} events/s"
        )
        out["freshness"] = asyncio.run(_freshness(env, web_base, worker.url, probe_users))
        produced = env.background.stop()
        env.background = None
        after = asyncio.run(_counters(worker.url))
        elapsed = time.perf_counter() - t_start
        out["background"] = produced
        processed = after.get("history", 0) - before.get("history", 0)
        out["worker_history_events_per_s"] = r(processed / elapsed, 0)
        out["backlog_at_end"] = int(produced.get("events", 0) + out["freshness"]["samples"] - processed)
        out["dead_letters"] = after.get("dead_letters", 0) - before.get("dead_letters", 0)
        out["touched_share_note"] = (
            "the worker's tables start empty, so the first event of a seeded user or video replaces its "
            "seeded Redis history / neighbour list with the table's (shorter) one"
        )
        f = out["freshness"]
        say(
            f"  freshness: gone p50 {f['gone']['p50_ms']} / p99 {f['gone']['p99_ms']} ms ({f['gone']['n']} of "
            f"{f['samples']}); in Redis p50 {f['redis']['p50_ms']} / p99 {f['redis']['p99_ms']} ms; background "
            f"{produced.get('events_per_s')} events/s produced, the worker's history agent "
            f"{out['worker_history_events_per_s']}/s"
        )
        if server is not None:
            out["log_tail"] = _tail(server["log"], 1500)
        return out
    finally:
        t_stop = time.perf_counter()
        if env.background is not None:
            env.background.stop()
            env.background = None
        t_web = time.perf_counter()
        if server is not None:
            stop_server(env, server)
        t_worker = time.perf_counter()
        env.cluster.stop()
        out["stop_s"] = {
            "producer": r(t_web - t_stop, 1),
            "web": r(t_worker - t_web, 1),
            "worker": r(time.perf_counter() - t_worker, 1),
        }
        say(f"  stopped (s): {out['stop_s']}")


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------
def run(cfg: ServingConfig) -> dict[str, Any]:
    from run import command_line, machine_info, versions

    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get("RECSTREAM_BENCH_COMMAND") or command_line(),
        "trial": cfg.quick,
        "config": asdict(cfg),
        "targets": TARGETS,
        "machine": machine_info(),
    }
    started = time.monotonic()
    ensure_wrk()
    res["versions"] = versions()
    kind = cfg.server
    if kind == "auto":
        kind = "web" if web_role_available() else "worker"
        if kind == "worker":
            say(
                "!!! `recstream web` is not available (yet): measuring `recstream worker`'s own views instead "
                "(1 process; no 2-process rows)"
            )
    res["server"] = kind
    env = Env(cfg)
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        env.start()
        res["isolation"] = {
            "redis": "private redis-server " + env.redis.version(),
            "topic_prefix": env.settings.topic_prefix,
            "app_id": env.settings.app_id,
            "mongo_db": env.settings.mongo_db,
        }
        say(
            f"serving 1/5: seeding Redis: {cfg.videos:,} videos, {cfg.users:,} users, neighbour lists, trending, "
            f"a rank-{cfg.als_rank} ALS model (load average {os.getloadavg()[0]:.2f})"
        )
        t0 = time.perf_counter()
        world = asyncio.run(_seed(env))
        world.counts["seconds"] = r(time.perf_counter() - t0, 1)
        res["seed"] = world.counts
        c = world.counts
        say(
            f"  seeded in {c['seconds']} s: {c['new_users']:,} new / {c['light_users']:,} light / "
            f"{c['heavy_users']:,} heavy users, {c['videos_with_neighbours']:,} neighbour lists "
            f"({c['neighbour_pairs']:,} pairs), {c['fresh_videos']:,} fresh, {c['trending_videos']:,} trending; "
            f"Redis {c['redis_used_memory_mb']:,} MB; {c['timings_s']}"
        )
        users_file, mix, users = _users_file(env, world)
        classes = {uid(u): int(world.user_class[u]) for u in range(cfg.users)}
        res["requests"] = {
            "users_in_file": len(users),
            "mix": mix,
            "k": cfg.k,
            "threads": cfg.threads,
            "connections": cfg.concurrency,
            "seconds": cfg.http_seconds,
            "warmup_s": cfg.http_warmup_s,
        }
        runs = [(kind, 1)] + ([(kind, 2)] if kind == "web" else []) + [("bare", 1), ("bare", 2)]
        res["http"] = {}
        for step, (k, n) in enumerate(runs, 1):
            name = f"{'recstream_' + kind if k != 'bare' else 'bare_aiohttp'}_{n}p"
            say(
                f"serving 2/5 ({step}/{len(runs)}): {'recstream ' + k if k != 'bare' else 'bare aiohttp static'}, "
                f"{n} process{'es' if n > 1 else ''}: wrk -t{cfg.threads} -c{cfg.concurrency} "
                f"-d{cfg.http_seconds}s"
            )
            try:
                if k == "worker":
                    res["http"][name] = _measure_worker(env, users_file, users, classes)
                else:
                    res["http"][name] = measure(env, k, n, users_file, users, classes)
            except Exception as exc:  # one target failing must not lose the others' numbers
                res["http"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"  {name}: {brief(res['http'][name])}")
        say(
            f"serving 3/5: under ingest: a recstream worker, {cfg.ingest_rate:,.0f} events/s to its topic, "
            f"{kind} 1 process under the same wrk load"
        )
        try:
            res["under_ingest"] = stage_under_ingest(env, world, kind, users_file, users, classes)
        except Exception as exc:
            say(f"!!! under ingest failed: {type(exc).__name__}: {exc}")
            res["under_ingest"] = {"error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # seeding or set-up: reported in the results, the run counts as incomplete
        say(f"!!! serving benchmark failed: {type(exc).__name__}: {exc}")
        res["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        say(
            "serving 5/5: stopping everything, removing the topics and the MongoDB database, flushing the "
            "private Redis"
        )
        t0 = time.perf_counter()
        env.close()
        res["cleanup_s"] = r(time.perf_counter() - t0, 1)
        signal.signal(signal.SIGTERM, previous)
    res["seconds"] = r(time.monotonic() - started, 1)
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["summary"] = summary(res)
    res["failures"] = failures(res)
    return res


def _sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the `finally` that stops every process


def _measure_worker(env: Env, users_file: Path, users: list[str], classes: dict[str, int]) -> dict[str, Any]:
    """Before the web role: `recstream worker`'s own views (stopped again afterwards)."""
    assert env.cluster is not None
    from recstream.kafka.admin import ensure_topics

    asyncio.run(ensure_topics(env.settings))
    env.worker_started = True
    t0 = time.perf_counter()
    worker = env.cluster.start_worker()
    try:
        out: dict[str, Any] = {
            "processes": 1,
            "ready_s": r(time.perf_counter() - t0, 2),
            "sample_answers": sanity(worker.url, users, classes, env.cfg.k),
        }
        if env.cfg.http_warmup_s:
            wrk(env, worker.url, env.cfg.http_warmup_s, users_file)
        out.update(
            wrk(env, worker.url, env.cfg.http_seconds, users_file, worker.proc.pid if worker.proc else None)
        )
        return out
    finally:
        env.cluster.stop()
        env.cluster.workers.clear()


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers and whether each target is met."""
    kind = res.get("server", "web")
    h = res.get("http", {})
    one, two = h.get(f"recstream_{kind}_1p", {}), h.get(f"recstream_{kind}_2p", {})
    b1, b2 = h.get("bare_aiohttp_1p", {}), h.get("bare_aiohttp_2p", {})

    def rate(d: dict[str, Any]) -> float | None:
        return d.get("requests_per_s") if "error" not in d and d.get("requests_per_s") else None

    def clean(d: dict[str, Any]) -> bool:
        return "error" not in d and not d.get("errors") and not d.get("non_2xx")

    s: dict[str, Any] = {}
    if rate(one):
        s["requests_per_s"] = one["requests_per_s"]
        s["p99_ms"] = one["p99_ms"]
        s["meets_requests_per_s"] = one["requests_per_s"] >= TARGETS["requests_per_s"] and clean(one)
        s["meets_p99"] = one["p99_ms"] <= TARGETS["p99_ms"] and clean(one)
    if rate(one) and rate(two):
        s["recstream_scaling"] = r(two["requests_per_s"] / one["requests_per_s"], 3)
    if rate(b1) and rate(b2):
        s["bare_scaling"] = r(b2["requests_per_s"] / b1["requests_per_s"], 3)
    if s.get("recstream_scaling") and s.get("bare_scaling"):
        s["scaling_vs_bare"] = r(s["recstream_scaling"] / s["bare_scaling"], 3)
        s["meets_scaling"] = s["scaling_vs_bare"] >= TARGETS["scaling_vs_bare"] and clean(two)
    f = res.get("under_ingest", {}).get("freshness", {})
    if f.get("samples"):
        s["freshness_p99_ms"] = f["gone"]["p99_ms"]
        s["meets_freshness"] = (
            f["gone"]["p99_ms"] is not None
            and not f["not_gone"]
            and f["gone"]["p99_ms"] <= TARGETS["freshness_p99_ms"]
        )
    return s


def failures(res: dict[str, Any]) -> list[str]:
    """What makes the run incomplete (not merely slow): a target that could not be measured."""
    bad = [f"set-up: {res['error']}"] if res.get("error") else []
    bad += [f"http {name}: {d['error']}" for name, d in res.get("http", {}).items() if "error" in d]
    u = res.get("under_ingest", {})
    if "error" in u:
        bad.append(f"under ingest: {u['error']}")
    elif u.get("http", {}).get("error"):
        bad.append(f"under ingest: wrk: {u['http']['error']}")
    elif u.get("background", {}).get("error"):
        bad.append(f"under ingest: background producer: {u['background']['error']}")
    return bad


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
def _n(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.1f}{unit}" if abs(x) >= 10 else f"{x:,.2f}{unit}"


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _errs(d: dict[str, Any]) -> str:
    e = (d.get("errors") or 0) + (d.get("non_2xx") or 0)
    return f" ({e:,} errors/non-2xx)" if e else ""


def markdown(res: dict[str, Any]) -> str:
    kind = res.get("server", "web")
    name = "`recstream web`" if kind == "web" else "`recstream worker` (no web role yet)"
    h, s, seed, req = (
        res.get("http", {}),
        res.get("summary", {}),
        res.get("seed", {}),
        res.get("requests", {}),
    )
    one, two = h.get(f"recstream_{kind}_1p", {}), h.get(f"recstream_{kind}_2p", {})
    b1, b2 = h.get("bare_aiohttp_1p", {}), h.get("bare_aiohttp_2p", {})
    u = res.get("under_ingest", {})
    rows: list[list[str]] = []

    def cell(d: dict[str, Any]) -> str:
        if "error" in d:
            return "error: " + " ".join(str(d["error"]).split())[:90].replace("|", "/")
        if not d:
            return "n/a"
        return f"{_n(d['requests_per_s'])} req/s{_errs(d)}"

    def lat(d: dict[str, Any]) -> str:
        return "n/a" if "error" in d or not d else f"{_n(d['p50_ms'])} / {_n(d['p99_ms'])} ms"

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if not a or not b else f"{a / b:.3g}x"

    c = f"c={req.get('connections')}, wrk -t{req.get('threads')}"
    rows.append(
        [
            f"`GET /recommendations/{{user}}?k={req.get('k', 20)}`, {name}, 1 process ({c})",
            cell(one),
            f"bare aiohttp 1 process {cell(b1)}",
            ratio(one.get("requests_per_s"), b1.get("requests_per_s")),
            f">= {TARGETS['requests_per_s']:,}/s",
            _yes(s.get("meets_requests_per_s")),
        ]
    )
    rows.append(
        [
            "latency p50 / p99, 1 process",
            lat(one),
            f"bare aiohttp {lat(b1)}",
            ratio(one.get("p99_ms"), b1.get("p99_ms")) + " (p99)",
            f"p99 <= {TARGETS['p99_ms']:g} ms",
            _yes(s.get("meets_p99")),
        ]
    )
    if kind == "web":
        rows.append(
            [
                f"{name}, 2 processes sharing the port (SO_REUSEPORT); p50 / p99 {lat(two)}",
                cell(two),
                f"bare aiohttp 2 processes {cell(b2)}",
                ratio(two.get("requests_per_s"), b2.get("requests_per_s")),
                "",
                "",
            ]
        )
        rows.append(
            [
                "2-process scaling (2 processes / 1)",
                f"{_n(s.get('recstream_scaling'))}x",
                f"bare aiohttp {_n(s.get('bare_scaling'))}x",
                f"{_n(s.get('scaling_vs_bare'))}x",
                f">= {TARGETS['scaling_vs_bare']:g}x bare's",
                _yes(s.get("meets_scaling")),
            ]
        )
    else:
        rows.append(["bare aiohttp, 2 processes (SO_REUSEPORT)", "n/a", cell(b2), "", "", ""])
    if "error" in u:
        rows.append(
            [
                "under ingest",
                "error: " + " ".join(u["error"].split())[:100].replace("|", "/"),
                "",
                "",
                "",
                "**no**",
            ]
        )
    elif u:
        bg = u.get("background", {})
        load = (
            f"while the pipeline ingests {_n(bg.get('events_per_s'))} events/s (worker: "
            f"{_n(u.get('worker_history_events_per_s'))}/s)"
        )
        uh = u.get("http", {})
        rows.append(
            [
                f"{name}, 1 process, {load}; p50 / p99 {lat(uh)}",
                cell(uh),
                f"the same, idle: {cell(one)}",
                ratio(uh.get("requests_per_s"), one.get("requests_per_s")),
                "",
                "",
            ]
        )
        ub = u.get("bare_http", {})
        if ub:
            rows.append(
                [
                    f"{name} under that ingest against bare aiohttp under the same ingest (1 process each, "
                    f"same wrk); bare p50 / p99 {lat(ub)}",
                    cell(uh),
                    f"bare aiohttp under ingest {cell(ub)}",
                    ratio(uh.get("requests_per_s"), ub.get("requests_per_s")),
                    f">= {TARGETS['requests_per_s']:,}/s",
                    _yes(
                        uh.get("requests_per_s") is not None
                        and uh["requests_per_s"] >= TARGETS["requests_per_s"]
                    ),
                ]
            )
        f = u.get("freshness", {})
        if f.get("samples"):
            g, rd = f["gone"], f["redis"]
            cu = u.get("caught_up_before_freshness", {})
            waited = (
                f"; sampled once the worker had caught up after wrk ({_n(cu.get('seconds'))} s)"
                if cu.get("caught_up")
                else "; **the worker had not caught up after wrk**"
            )
            rows.append(
                [
                    f"freshness {load}: `POST /events` (a view) -> that video gone from the web role's "
                    f"list ({g['n']} of {f['samples']} samples{waited})",
                    f"p50 {_n(g['p50_ms'])} / p99 {_n(g['p99_ms'])} ms",
                    f"worker -> `hist:{{user}}` in Redis p50 {_n(rd['p50_ms'])} / p99 {_n(rd['p99_ms'])} ms",
                    ratio(g["p99_ms"], rd["p99_ms"]) + " (p99)",
                    f"p99 <= {TARGETS['freshness_p99_ms']:g} ms",
                    _yes(s.get("meets_freshness")),
                ]
            )
    m, v = res["machine"], res.get("versions", {})
    lines = [
        f"Serving (`benchmarks/serving.py`), {name} against bare aiohttp (`bare_aiohttp.py --mode static`), same "
        "wrk settings, same run:",
        "",
        "| benchmark | recstream | peer (same run) | ratio | target | meets |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    trial = " **Trial run (reduced sizes): not the published numbers.**" if res.get("trial") else ""
    if seed:
        ready = one.get("ready_s")
        mix = req.get("mix", {})
        lines += [
            "",
            f"State, seeded into a private Redis through recstream's write functions ({seed.get('seconds')} s): "
            f"{seed.get('videos', 0):,} videos ({seed.get('fresh_videos', 0):,} published in the last day, "
            f"{seed.get('videos_with_neighbours', 0):,} with {res['config'].get('neighbours_min', '?')}-"
            f"{res['config'].get('neighbours_max', '?')} item-CF neighbours, "
            f"{seed.get('trending_videos', 0):,} trending), {seed.get('users', 0):,} users "
            f"({seed.get('new_users', 0):,} new, {seed.get('light_users', 0):,} with 1-5 history entries, "
            f"{seed.get('heavy_users', 0):,} with 50), an active rank-{seed.get('model', {}).get('rank')} ALS model "
            f"over {seed.get('model', {}).get('users', 0):,} users; Zipf {res['config']['zipf']}; Redis "
            f"{_n(seed.get('redis_used_memory_mb'))} MB. Requests walk {req.get('users_in_file', 0):,} of those "
            f"users ({', '.join(f'{k} {v:,}' for k, v in mix.items())}). "
            f"{name} 1 process answered /health 200 {_n(ready)} s after its start (resident memory then "
            f"{_n(one.get('rss_mb_when_ready'))} MB; 2 processes: {_n(two.get('ready_s'))} s, "
            f"{_n(two.get('rss_mb_when_ready'))} MB).",
        ]
    lines += [
        "",
        f"{res['date']}, {m['cores']} cores ({m['cpu']}), load average at start {m['load_average_at_start'][0]}"
        + (f" (at end {m['load_average_at_end'][0]})" if m.get("load_average_at_end") else "")
        + f"; Python {v.get('python')}, aiohttp {v.get('aiohttp')}, {v.get('wrk', 'wrk')}, "
        f"{res.get('isolation', {}).get('redis', 'redis')}, Kafka {v.get('kafka_broker')}; commit "
        f"{v.get('git_commit')}{' (dirty)' if v.get('git_dirty') else ''}. Command: `{res['command']}`.{trial}",
        "Everything (servers, wrk, Redis, Kafka, the worker, the producer) shares the machine.",
    ]
    return "\n".join(lines) + "\n"


def write(res: dict[str, Any]) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    table = markdown(res)
    (RESULTS / "serving.md").write_text(table)
    return table


# --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="trial sizes: 10,000 videos, 20,000 users, 3 s of wrk per target, 20 freshness samples",
    )
    p.add_argument("--videos", type=int, help="default 100,000 (--quick 10,000)")
    p.add_argument("--users", type=int, help="default 200,000 (--quick 20,000)")
    p.add_argument("--request-users", type=int, help="users in the wrk file (default 20,000; --quick 5,000)")
    p.add_argument("--http-seconds", type=int, help="wrk run per target (default 10; --quick 3)")
    p.add_argument("--concurrency", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument(
        "--ingest-rate", type=float, default=2_000.0, help="events/s during step 3 (default 2,000)"
    )
    p.add_argument("--freshness-samples", type=int, help="default 100 (--quick 20)")
    p.add_argument(
        "--server",
        choices=["auto", "web", "worker"],
        default="auto",
        help="auto: `recstream web` when it exists, else `recstream worker`'s own views",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also sample the 1-process web role with py-spy during one extra wrk run",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs), topics and MongoDB database"
    )
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> ServingConfig:
    q = QUICK if args.quick else {}
    cfg = ServingConfig(
        quick=args.quick,
        concurrency=args.concurrency,
        threads=args.threads,
        ingest_rate=args.ingest_rate,
        server=args.server,
        seed=args.seed,
        keep=args.keep,
        profile=args.profile,
    )
    for name in ("videos", "users", "request_users", "http_seconds", "freshness_samples"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
        elif name in q:
            setattr(cfg, name, q[name])
    for name in ("http_warmup_s", "ingest_warmup_s"):
        if name in q:
            setattr(cfg, name, q[name])
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = config_from(parse_args(argv))
    res = run(cfg)
    table = write(res)
    say(f"done in {res['seconds']} s: benchmarks/results/serving.json, benchmarks/results/serving.md")
    print(table)
    prof = res.get("http", {}).get("recstream_web_1p", {}).get("profile", {})
    if prof.get("samples"):
        say(
            "web process profile (py-spy --gil, self %): "
            + ", ".join(f"{name} {share}" for name, share in prof["self_pct"][:8])
        )
    for line in res["failures"]:
        say(f"!!! INCOMPLETE RUN: {line}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
