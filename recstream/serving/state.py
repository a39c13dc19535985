"""What a web process needs to answer `/recommendations` without asking Redis for it per request.

`ServingState` keeps, in the process, the catalog's creators, every video's item-CF neighbour list,
the trending and fresh pools, and (through `foldin.ModelCache`) the active ALS model. A background
loop refreshes them from what the agents publish in Redis:

- neighbour lists and the catalog through change feeds: each write of `nbrs:{video}` (or of a video's
  catalog entry) also records the video in a sorted set `changes:{kind}` under a sequence number from
  `changes:seq`, in the same MULTI (`Stores.write_neighbours`, `Stores.write_catalog`). The loop asks
  for members past the last sequence it saw and reads just those. The first load scans every key, so
  state written before the feed existed is served too;
- the trending and fresh pools as a whole (their top `serving_pool_size` each), every refresh;
- the model: `ModelCache.refresh` (one GET of the active version, a load when it changed).

Per video number it also keeps what `kernels.rank` reads: creators, the seen filter's bit positions, the
video's rank in id order (`rank_ids`: ties between equal scores go by video id), and scratch slots.

Staleness is bounded by `serving_refresh_interval_s` (plus the agents' own `serving_write_interval_s`)
and reported per part in `/metrics` (`recstream_serving_state_age_seconds`) and `/health`.

Videos are interned to dense integer ids so that a request scores arrays, not dicts.
Neighbour lists share one arena (`set_neighbours`): 8 bytes per neighbour (int32 video number, float32
weight), ~400 bytes per video at `serving_neighbours_per_video` = 50, which caps it; docs/architecture.md
states a process's memory at 100,000 and 1,000,000 videos.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
import threadpoolctl

from recstream import metrics, scoring
from recstream.redis_layout import (
    CHANGES_SEQ_KEY,
    FRESH_KEY,
    REMOVED_VIDEOS_KEY,
    TRENDING_KEY,
    VIDEO_CREATOR_KEY,
    bloom_positions,
    changes_key,
    neighbours_key,
)
from recstream.serving import kernels
from recstream.serving.foldin import ModelCache
from recstream.settings import Settings

log = logging.getLogger(__name__)
RESUME_WAIT_S = 1.0
"""How long a view waits for the first refresh after an idle pause (`ServingState.ready`)."""
CHUNK = 1000  # keys per MGET / members per ZRANGEBYSCORE page
CLOSE_RECANCEL_S = 0.5
"""How long `close` waits after a cancellation before it cancels again."""
NEIGHBOURS_PAGE = 200
"""Neighbour lists per MGET, with the event loop given back between pages: taking in 1,000 lists of 50
held it 50-150 ms (a worker serving from its own state: every user's next event waited)."""
PARTS = ("catalog", "neighbours", "trending", "fresh", "model")
EMPTY_ROWS = np.empty(0, dtype=np.int64)


class Base:
    """The trending and fresh pools blended for one pair of weights, the same for every request until
    the next refresh: the pool's videos best first (ties by id), and per video its blended score."""

    def __init__(self, state: ServingState, w_trending: float, w_fresh: float) -> None:
        capacity = len(state.acc)
        self.score = np.zeros(capacity, dtype=np.float64)
        self.member = np.zeros(capacity, dtype=bool)
        pools = [(w, pool) for w, pool in ((w_trending, state.trending), (w_fresh, state.fresh)) if w]
        for w, (idx, val) in pools:
            self.score[idx] += w * val
            self.member[idx] = True
        pool = np.flatnonzero(self.member)
        state.rank_ids()
        self.order = pool[np.lexsort((state.id_rank[pool], -self.score[pool]))]  # best first, ties by id
        self._factors: tuple[str, np.ndarray, np.ndarray] | None = None
        self._extra_ok: tuple[tuple[str, int, int], np.ndarray] | None = None
        self.cold: dict[tuple[int, int], list] = {}  # (k, creator cap) -> the answer for someone new

    def factors(self, state: ServingState, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """The videos the model scores for everyone's blend, and their factor rows (gathered once per
        model and refresh): the pools' videos it knows, then its own retrieval set (`_retrieval`)."""
        if self._factors is None or self._factors[0] != model.version:
            rows = state.model_rows(model)
            pooled = self.order[rows[self.order] >= 0]
            cand = np.concatenate((pooled, self._retrieval(state, model)))
            self._factors = (model.version, cand, np.ascontiguousarray(model.item_factors[rows[cand]]))
        return self._factors[1], self._factors[2]

    def _retrieval(self, state: ServingState, model: Any) -> np.ndarray:
        """ALS's own candidates beside the pools: the `serving_als_pool_size` catalog videos not pooled
        with the longest item vectors (`ServingState.als_ranked`: ranked once per model and catalog, so a
        refresh only filters its head). A user's best scores u.v = |u| |v| cos come mostly from long item
        vectors (implicit ALS makes an item's norm grow with its support), so these hold most of what the
        whole-catalog `als` strategy would pick, at a fixed cost per request; without them the blend's
        ALS could only re-rank trending, fresh and item-CF candidates."""
        size = state.settings.serving_als_pool_size
        head = state.als_ranked(model)[: size + len(self.order)]  # at most len(order) of them are pooled
        return head[~self.member[head]][:size]

    def extra_ok(self, state: ServingState, model: Any) -> np.ndarray:
        """Per video number: True when the model knows it and `factors` does not hold it (an item-CF
        candidate the model scores beside them), kept per model version."""
        rows = state.model_rows(model)
        key = (model.version, len(state.ids), len(rows))  # rows fill in as videos are interned
        if self._extra_ok is None or self._extra_ok[0] != key:
            n = min(len(rows), len(self.member))
            ok = rows >= 0
            ok[:n] &= ~self.member[:n]
            ok[self.factors(state, model)[0]] = False
            self._extra_ok = (key, ok)
        return self._extra_ok[1]


class ServingState:
    """The in-process serving state of one web process (see the module docstring)."""

    def __init__(self, settings: Settings, models: ModelCache | None = None) -> None:
        self.settings = settings
        self.redis: aioredis.Redis = aioredis.from_url(settings.redis_url, decode_responses=False)
        self.models = models
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._creator_index: dict[str, int] = {}
        n = 1024
        self.creator = np.full(n, -1, dtype=np.int32)  # creator number per video, -1 unknown
        self.in_catalog = np.zeros(n, dtype=bool)
        self.removed = np.zeros(n, dtype=bool)  # taken down (DELETE /videos/{id}): never served
        self.any_removed = False  # whether any is (the seen filter then skips looking)
        # Where each video's bits are in a seen filter: byte number and the bit's mask (SETBIT numbers bits
        # from the most significant of byte 0), one column per hash.
        self.bloom_byte = np.zeros((n, settings.seen_bloom_hashes), dtype=np.int32)
        self.bloom_mask = np.zeros((n, settings.seen_bloom_hashes), dtype=np.uint8)
        # Neighbour lists, best first, in one arena (`set_neighbours`): video v's list is
        # nbr_to / nbr_w[nbr_start[v] : nbr_start[v] + nbr_len[v]]. A list written again goes to the end;
        # the arena is compacted when it runs out of room (`_compact`).
        self.nbr_start = np.zeros(n, dtype=np.int64)
        self.nbr_len = np.zeros(n, dtype=np.int32)
        # 4 + 4 bytes per neighbour: 25 MB for 3,000,000 (100,000 videos), which two processes on a small
        # host share the last-level cache with (float32 weights: 7 digits, what a ranking needs).
        self.nbr_to = np.zeros(4096, dtype=np.int32)
        self.nbr_w = np.zeros(4096, dtype=np.float32)
        self._arena_used = 0
        self.neighbour_lists = 0  # videos with a list
        # Each video's rank in video-id order (ties between equal scores go by video id), kept as videos
        # are interned (`rank_ids`).
        self.id_rank = np.zeros(n, dtype=np.int64)
        self._sorted_ids: list[str] = []
        self._ranked = 0  # ids[:_ranked] have their rank
        self.trending = (np.empty(0, np.int64), np.empty(0, np.float64))  # best first, max-scaled to 1
        self.fresh = (np.empty(0, np.int64), np.empty(0, np.float64))
        self.in_trending = np.zeros(n, dtype=bool)
        self.in_fresh = np.zeros(n, dtype=bool)
        self.nowhere = np.zeros(n, dtype=bool)  # a pool the blend does not use
        # Per-request scratch of `kernels.rank`, one slot per video, left as found: the item-CF and blend
        # accumulator (all zero), flags (all zero), best source values (zero) and sources (any value), and
        # per creator the count picked so far (zero).
        self.acc = np.zeros(n, dtype=np.float64)
        self.flags = np.zeros(n, dtype=np.uint8)
        self.best = np.zeros(n, dtype=np.float64)
        self.best_src = np.zeros(n, dtype=np.int64)
        self.per_creator = np.zeros(64, dtype=np.int32)
        self._model_rows: tuple[str, np.ndarray, int] | None = None
        self._bases: dict[tuple[float, float], Base] = {}
        self._als_ranked: tuple[tuple[str, int, int], np.ndarray] | None = None
        self.cursors = {"catalog": 0, "neighbours": 0}
        self.refreshed_at: dict[str, float] = {}
        self.loaded = asyncio.Event()
        self._wanted = asyncio.Event()  # refresh (cleared while idle, see start)
        self._fresh = asyncio.Event()  # refreshed since it last went idle
        self._used_at = time.monotonic()
        self._idle_after_s: float | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    # --- ids ------------------------------------------------------------------------------
    def intern(self, video: str) -> int:
        i = self.index.get(video)
        if i is None:
            i = self.index[video] = len(self.ids)
            self.ids.append(video)
            if i >= len(self.creator):
                self._grow(2 * i)
            bits = bloom_positions(video, self.settings.seen_bloom_bits, self.settings.seen_bloom_hashes)
            self.bloom_byte[i, : len(bits)] = [b >> 3 for b in bits]
            self.bloom_mask[i, : len(bits)] = [0x80 >> (b & 7) for b in bits]
        return i

    def _grow(self, n: int) -> None:
        def grown(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((n, *a.shape[1:]), fill, dtype=a.dtype)
            out[: len(a)] = a
            return out

        self.creator = grown(self.creator, -1)
        self.in_catalog = grown(self.in_catalog, False)
        self.removed = grown(self.removed, False)
        self.bloom_byte = grown(self.bloom_byte, 0)
        self.bloom_mask = grown(self.bloom_mask, 0)
        self.in_trending = grown(self.in_trending, False)
        self.in_fresh = grown(self.in_fresh, False)
        self.nowhere = grown(self.nowhere, False)
        self.acc = grown(self.acc, 0.0)
        self.flags = grown(self.flags, 0)
        self.best = grown(self.best, 0.0)
        self.best_src = grown(self.best_src, 0)
        self.nbr_start = grown(self.nbr_start, 0)
        self.nbr_len = grown(self.nbr_len, 0)
        self.id_rank = grown(self.id_rank, 0)

    def rank_ids(self) -> None:
        """Give the videos interned since the last call their rank in id order, and move the others' up
        past them: O(new * log n) to place them plus one pass over the ranks, not a sort of every id."""
        n, done = len(self.ids), self._ranked
        if done == n:
            return
        ids, ranked = self.ids, self._sorted_ids
        new = sorted(range(done, n), key=ids.__getitem__)
        if len(new) > len(ranked) // 8:  # many (the first load): sort them all
            order = sorted(range(n), key=ids.__getitem__)
            self.id_rank[order] = np.arange(n)
            self._sorted_ids = [ids[i] for i in order]
        else:
            # A new id goes where bisect puts it among the old ones, after the new ones below it; an
            # old one moves up by the new ones placed at or below its rank.
            positions = np.array([bisect.bisect_left(ranked, ids[i]) for i in new], dtype=np.int64)
            old = self.id_rank[:done]
            old += np.searchsorted(positions, old, side="right")
            self.id_rank[new] = positions + np.arange(len(new))
            for j in range(len(new) - 1, -1, -1):  # from the end: the positions before stay valid
                ranked.insert(int(positions[j]), ids[new[j]])
        self._ranked = n

    def removed_among(self, videos: list[str]) -> set[str]:
        """Which of these videos are taken down, as of the last refresh of the catalog."""
        index, removed = self.index, self.removed
        return {v for v in videos if (i := index.get(v)) is not None and removed[i]}

    def base(self, w_trending: float, w_fresh: float) -> Base:
        """The pools blended with these weights (built at most once per refresh)."""
        base = self._bases.get((w_trending, w_fresh))
        if base is None or len(base.score) < len(self.acc):
            base = self._bases[(w_trending, w_fresh)] = Base(self, w_trending, w_fresh)
        return base

    def model_rows(self, model: Any) -> np.ndarray:
        """Per video number, its row in the model's factors (-1: unknown to the model); kept per model
        version and extended as videos are added."""
        version, rows, done = self._model_rows or (None, EMPTY_ROWS, 0)
        if version != model.version:
            rows, done = np.full(len(self.creator), -1, dtype=np.int64), 0
        elif len(rows) < len(self.creator):
            rows = np.concatenate((rows, np.full(len(self.creator) - len(rows), -1, dtype=np.int64)))
        if done < len(self.ids):
            get = model.item_index.get
            rows[done : len(self.ids)] = np.fromiter(
                (get(v, -1) for v in self.ids[done:]), dtype=np.int64, count=len(self.ids) - done
            )
            done = len(self.ids)
        self._model_rows = (model.version, rows, done)
        return rows

    def als_ranked(self, model: Any) -> np.ndarray:
        """The catalog videos the model knows, longest item vector first (ties by video number), kept per
        model version and catalog change (taken-down videos are filtered per request, as everywhere)."""
        key = (model.version, len(self.ids), self.cursors["catalog"])
        if self._als_ranked is None or self._als_ranked[0] != key:
            rows = self.model_rows(model)
            n = min(len(rows), len(self.ids))
            cand = np.flatnonzero((rows[:n] >= 0) & self.in_catalog[:n])
            f = model.item_factors[rows[cand]]
            norms = np.einsum("ij,ij->i", f, f, dtype=np.float64)  # squared: the same order
            self._als_ranked = (key, cand[np.argsort(-norms, kind="stable")])
        return self._als_ranked[1]

    def catalog_ids(self) -> np.ndarray:
        return np.flatnonzero(self.in_catalog[: len(self.ids)])

    # --- refresh --------------------------------------------------------------------------
    def start(self, idle_after_s: float | None = None) -> None:
        """Load now and refresh in the background. With `idle_after_s` (a worker: the web role usually
        serves its users) refreshing pauses once no view has used the state for that long, and resumes at
        the next one (`ready`): the refresh re-reads every neighbour list the agents write, 2.2 % of a
        worker's CPU at 1,000,000 events, for nobody."""
        # One BLAS thread: a request's products are small, and waking a pool for each costs more than
        # it saves on a busy host.
        threadpoolctl.threadpool_limits(1)
        self._idle_after_s = idle_after_s
        self._used_at = time.monotonic()
        self._wanted.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="serving-state")

    async def ready(self) -> None:
        """What a view awaits before it serves from this state: the first load, and after an idle pause
        one refresh (waited at most RESUME_WAIT_S; past that, or with Redis down, the last state serves
        and its age shows in /health and /metrics)."""
        self._used_at = time.monotonic()
        self._wanted.set()
        if not self.loaded.is_set():
            await self.loaded.wait()
        elif not self._fresh.is_set():
            try:
                await asyncio.wait_for(self._fresh.wait(), RESUME_WAIT_S)
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Stop refreshing, and close the Redis client. A cancellation can be lost: `asyncio.wait_for`
        in a client library (Python 3.11) swallows it when the call it waits for finishes at the same
        moment, and the refresh loop went on; a worker stopped then waited here until it was killed
        (30 s, seen after a rebalance). So the loop also checks a flag, and this cancels until it ends."""
        self._closing = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_RECANCEL_S)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.warning("serving state refresh ended with %r", task.exception())
        await self.redis.aclose()

    async def _run(self) -> None:
        interval = self.settings.serving_refresh_interval_s
        while not self._closing:
            idle = self._idle_after_s
            if idle is not None and self.loaded.is_set() and time.monotonic() - self._used_at > idle:
                self._fresh.clear()
                self._wanted.clear()
                await self._wanted.wait()  # until a view is `ready` to serve again
            started = time.monotonic()
            try:
                await self.refresh()
                self._fresh.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: serve the last state, report its age, try again
                log.warning("serving state refresh failed (%s: %s)", type(exc).__name__, exc)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def refresh(self) -> None:
        """One refresh of every part (the first one loads everything, and so does the first after Redis
        lost its data: its change feed then starts again below our cursors)."""
        first = not self.loaded.is_set()
        if not first and int(await self.redis.get(CHANGES_SEQ_KEY) or 0) < max(
            self.cursors.values(), default=0
        ):
            log.warning(
                "Redis' change feed went back (Redis lost its data?): loading the serving state again"
            )
            first = True
        await self._refresh_catalog(first)
        await self._refresh_neighbours(first)
        await self._refresh_pools()
        if self.models is not None:
            await self.models.refresh()
            self._mark("model")
        self.rank_ids()
        if first:
            # The compiled loops of `recommend`: compiled (~4 s) or loaded from their cache (~0.4 s) before
            # the first answer, off the event loop.
            await asyncio.to_thread(kernels.warm_up)
            # Hundreds of thousands of long-lived objects (ids, maps, arrays): out of the collector's
            # reach, or every full collection walks them all in the middle of requests.
            gc.collect()
            gc.freeze()
        self.loaded.set()

    def _mark(self, part: str) -> None:
        self.refreshed_at[part] = time.time()

    def ages(self) -> dict[str, float | None]:
        """Seconds since each part was last refreshed (None: never)."""
        now = time.time()
        return {
            p: (round(now - t, 3) if (t := self.refreshed_at.get(p)) is not None else None) for p in PARTS
        }

    def export_ages(self) -> None:
        for part, age in self.ages().items():
            metrics.serving_state_age.labels(part=part).set(-1 if age is None else age)

    async def _changed(self, kind: str, first: bool) -> list[bytes] | None:
        """Members changed since our cursor (None on the first load: the caller scans everything)."""
        if first:
            self.cursors[kind] = int(await self.redis.get(CHANGES_SEQ_KEY) or 0)
            return None
        members: list[bytes] = []
        cursor = self.cursors[kind]
        while True:
            page = await self.redis.zrangebyscore(
                changes_key(kind), f"({cursor}", "+inf", start=0, num=CHUNK, withscores=True
            )
            if not page:
                break
            members += [m for m, _s in page]
            cursor = int(page[-1][1])
            if len(page) < CHUNK:
                break
        self.cursors[kind] = cursor
        return members

    async def _refresh_catalog(self, first: bool) -> None:
        changed = await self._changed("catalog", first)
        if changed is None:
            creators = await self.redis.hgetall(VIDEO_CREATOR_KEY)
        elif changed:
            values: list[bytes | None] = []
            for i in range(0, len(changed), CHUNK):
                values += await self.redis.hmget(VIDEO_CREATOR_KEY, changed[i : i + CHUNK])
            creators = {v: c for v, c in zip(changed, values, strict=True) if c is not None}
        else:
            creators = {}
        for video, creator in creators.items():
            i = self.intern(video.decode())
            c = self._creator_index.setdefault(creator.decode(), len(self._creator_index))
            if c >= len(self.per_creator):
                self.per_creator = np.zeros(2 * c + 1, dtype=np.int32)
            self.creator[i] = c
            self.in_catalog[i] = True
            self.removed[i] = False  # published again after a take-down
        if changed is None:
            removed = await self.redis.smembers(REMOVED_VIDEOS_KEY)
        elif changed:
            flags = await self.redis.smismember(REMOVED_VIDEOS_KEY, changed)
            removed = [v for v, f in zip(changed, flags, strict=True) if f]
        else:
            removed = []
        for video in removed:
            i = self.intern(video.decode())
            self.removed[i], self.in_catalog[i] = True, False
        if creators or removed:
            self.any_removed = bool(self.removed[: len(self.ids)].any())
        self._mark("catalog")

    async def _refresh_neighbours(self, first: bool) -> None:
        changed = await self._changed("neighbours", first)
        if changed is None:
            changed = [
                key[len(b"nbrs:") :] async for key in self.redis.scan_iter(match=b"nbrs:*", count=CHUNK)
            ]
        for i in range(0, len(changed), NEIGHBOURS_PAGE):
            videos = [v.decode() for v in changed[i : i + NEIGHBOURS_PAGE]]
            values = await self.redis.mget([neighbours_key(v) for v in videos])
            for video, raw in zip(videos, values, strict=True):
                self.set_neighbours(video, orjson.loads(raw) if raw else [])
            await asyncio.sleep(0)  # a first load of 100,000 lists: let requests in between pages
        self._mark("neighbours")

    def set_neighbours(self, video: str, pairs: list) -> None:
        """A video's neighbour list, best first, at most `serving_neighbours_per_video`."""
        src = self.intern(video)
        old = int(self.nbr_len[src])
        limit = self.settings.serving_neighbours_per_video
        if len(pairs) > limit:
            pairs = sorted(pairs, key=lambda p: -p[1])[:limit]
        m = len(pairs)
        self.neighbour_lists += (m > 0) - (old > 0)
        self.nbr_len[src] = 0
        if not m:
            return
        if self._arena_used + m > len(self.nbr_to):
            self._compact(m)
        intern, at = self.intern, self._arena_used
        self.nbr_to[at : at + m] = np.fromiter((intern(p[0]) for p in pairs), dtype=np.int32, count=m)
        self.nbr_w[at : at + m] = np.fromiter((p[1] for p in pairs), dtype=np.float32, count=m)
        self.nbr_start[src], self.nbr_len[src] = at, m
        self._arena_used = at + m

    def _compact(self, extra: int) -> None:
        """Copy the live lists to a new arena with room for `extra` more (and as much again)."""
        lists = np.flatnonzero(self.nbr_len[: len(self.ids)])
        lengths = self.nbr_len[lists].astype(np.int64)
        starts = np.zeros(len(lists), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        live = int(lengths.sum())
        where = np.repeat(self.nbr_start[lists] - starts, lengths) + np.arange(live)
        capacity = max(4096, 2 * (live + extra))
        to, w = np.zeros(capacity, dtype=np.int32), np.zeros(capacity, dtype=np.float32)
        to[:live], w[:live] = self.nbr_to[where], self.nbr_w[where]
        self.nbr_to, self.nbr_w, self._arena_used = to, w, live
        self.nbr_start[lists] = starts

    def neighbours(self, src: int) -> tuple[np.ndarray, np.ndarray]:
        """Video number `src`'s neighbour list: (video numbers, weights), best first (empty: none)."""
        start, n = int(self.nbr_start[src]), int(self.nbr_len[src])
        return self.nbr_to[start : start + n], self.nbr_w[start : start + n]

    async def _refresh_pools(self) -> None:
        size = self.settings.serving_pool_size
        now = int(time.time() * 1000)
        trending = await self.redis.zrevrange(TRENDING_KEY, 0, size - 1, withscores=True)
        # Ranks are log2 of forward-decayed sums: their ratios do not change with time, so the pool's
        # max-scaled scores stay right between refreshes.
        self.trending = self._pool(
            [(v, scoring.trend_score_now(r, now, self.settings.trending_half_life_s)) for v, r in trending]
        )
        self._mark("trending")
        window_ms = self.settings.fresh_window_s * 1000
        fresh = await self.redis.zrevrangebyscore(
            FRESH_KEY, "+inf", now - window_ms, start=0, num=size, withscores=True
        )
        # Newer is better, linearly over the freshness window.
        self.fresh = self._pool([(v, max(1e-3, 1 - (now - created) / window_ms)) for v, created in fresh])
        for flags, (idx, _val) in ((self.in_trending, self.trending), (self.in_fresh, self.fresh)):
            flags[:] = False
            flags[idx] = True
        self._bases = {}
        self._mark("fresh")

    def _pool(self, scored: Iterable[tuple[bytes, float]]) -> tuple[np.ndarray, np.ndarray]:
        """(video numbers, scores max-scaled to 1), best first."""
        pairs = [(self.intern(v.decode()), s) for v, s in scored]
        idx = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
        val = np.fromiter((s for _, s in pairs), dtype=np.float64, count=len(pairs))
        top = val.max(initial=0.0)
        return idx, (val / top if top > 0 else np.zeros_like(val))
