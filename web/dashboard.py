"""The operator dashboard: the page at `/`, its static files, and the JSON it shows (GET /api/*).

The page computes nothing: every number on it comes from these views (or from the client API in
web/api.py), which read what the agents materialise in Redis and the registry in MongoDB.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust import web
from redis.exceptions import RedisError

from recstream import metrics
from recstream.kafka.config import client_kwargs
from recstream.kafka.topics import topic_names
from recstream.records import EVENT_TYPES
from recstream.serving import model_store
from recstream.serving.stores import seen_count
from recstream.streaming.app import app
from recstream.streaming.runtime import api, stores
from recstream.web.api import update_consumer_lag
from recstream.web.handlers import default_access, timed

_s = app.recstream_settings  # type: ignore[attr-defined]
log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SETTLE_S = 1.0  # a second is shown once it ended this long ago: its events have been processed
RATES = (("completion_rate", "completions"), ("like_rate", "like"), ("share_rate", "share"))

app.web.add_static("/static/", STATIC)
if not (STATIC / "vendor" / "chart.umd.min.js").exists():
    log.warning("dashboard: web/static/vendor is missing; run scripts/build-web-assets.sh (make install)")


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError as exc:
        raise web.exceptions.ValidationError(f"{name} must be an integer") from exc
    return max(low, min(value, high))


HIDDEN = "(hidden: needs the read API key)"


def guarded(route: str, scope: str = "public") -> Callable:
    """Timed like the client API; a store that is down is a 503 naming it, not a bare 500."""

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)
        @timed(route, scope)
        async def inner(view: web.View, *args: Any, **kwargs: Any) -> web.Response:
            try:
                return await handler(view, *args, **kwargs)
            except (RedisError, OSError) as exc:
                return view.json({"error": "redis unreachable", "detail": str(exc)}, status=503)

        return inner

    return wrap


def _ratio(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


# --- the page -------------------------------------------------------------------------------
@app.page("/")
class Index(web.View):
    async def get(self, request: web.Request) -> web.Response:
        html = (STATIC / "index.html").read_text()
        for asset in ("app.js", "style.css"):  # a new release is fetched, not taken from the browser cache
            html = html.replace(
                f"/static/{asset}", f"/static/{asset}?v={int((STATIC / asset).stat().st_mtime)}"
            )
        return self.html(html, headers={"Cache-Control": "no-cache"})


# --- live overview --------------------------------------------------------------------------
async def overview(minutes: int, step: int, now: float | None = None) -> dict[str, Any]:
    """Per-bucket series and window totals from the per-second counters the history agent writes."""
    now = time.time() if now is None else now
    end = (int(now - SETTLE_S) // step) * step  # exclusive: buckets [t, t + step) ending before it
    n = max(1, minutes * 60 // step)
    start = end - n * step
    per_second, per_minute = await stores().overview(start, end - 1)
    active = await stores().active_users(start, end - 1)

    def total(field: str, lo: int, hi: int) -> float:
        return sum(per_second.get(s, {}).get(field, 0.0) for s in range(lo, hi))

    t = [start + i * step for i in range(n)]
    series: dict[str, Any] = {"t": t, "events_per_s": {}, "views": []}
    for kind in EVENT_TYPES:
        series["events_per_s"][kind] = [round(total(kind, b, b + step) / step, 3) for b in t]
    series["views"] = [total("view", b, b + step) for b in t]
    series["avg_watch_time_ms"] = [
        _ratio(total("watch_time_ms", b, b + step), v, 1) for b, v in zip(t, series["views"], strict=True)
    ]
    for name, field in RATES:
        series[name] = [_ratio(total(field, b, b + step), v) for b, v in zip(t, series["views"], strict=True)]

    by_type = {kind: int(total(kind, start, end)) for kind in EVENT_TYPES}
    views, events = by_type["view"], sum(by_type.values())
    totals: dict[str, Any] = {
        "events": events,
        "by_type": by_type,
        "events_per_s": round(events / (n * step), 3),
        "views": views,
        "active_users": active,
        "avg_watch_time_ms": _ratio(total("watch_time_ms", start, end), views, 1),
    }
    for name, field in RATES:
        totals[name] = _ratio(total(field, start, end), views)
    recent = sum(total(kind, end - 10, end) for kind in EVENT_TYPES)
    return {
        "since_s": start,
        "until_s": end,
        "step_s": step,
        "series": series,
        "totals": totals,
        "current": {"events_per_s": round(recent / 10, 3), "window_s": 10},
        "active_users": {
            "minutes": [m * 60 for m in sorted(per_minute)],
            "users": [per_minute[m] for m in sorted(per_minute)],
        },
    }


@app.page("/api/overview")
class Overview(web.View):
    @guarded("/api/overview")
    async def get(self, request: web.Request) -> web.Response:
        minutes, step = _int(request, "minutes", 5, 1, 60), _int(request, "step", 1, 1, 60)
        return self.json(await overview(minutes, step))


# --- trending and per-video analytics -------------------------------------------------------
def trend_direction(stats: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """Rising or falling: views per minute since the latest short window began, against the same
    since the latest long window began (both windows are the newest that saw an event)."""

    def per_minute(window: Mapping[str, Any] | None, floor_s: float) -> float:
        if not window:
            return 0.0
        return window.get("views", 0) / max(floor_s, (now_ms - window["start_ms"]) / 1000) * 60

    recent = per_minute(stats.get("window_short"), 10.0)
    longer = per_minute(stats.get("window_long"), 60.0)
    if longer == 0:
        direction = "new" if recent > 0 else "flat"
    else:
        direction = "up" if recent >= 1.25 * longer else "down" if recent <= 0.8 * longer else "flat"
    return {
        "direction": direction,
        "recent_views_per_min": round(recent, 2),
        "views_per_min": round(longer, 2),
    }


def _meta_fields(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = meta or {}
    return {
        k: meta.get(k, d)
        for k, d in (
            ("caption", ""),
            ("creator_id", None),
            ("hashtags", []),
            ("category", None),
            ("duration_ms", None),
            ("created_at", None),
        )
    }


@app.page("/api/trending")
class TrendingNow(web.View):
    """GET /trending's list (same scores, same counters) with metadata and trend direction."""

    @guarded("/api/trending")
    async def get(self, request: web.Request) -> web.Response:
        k = _int(request, "k", 10, 1, 100)
        scores = await api().trending_scores(k)
        stats, meta = await stores().video_stats(list(scores)), await stores().video_meta(list(scores))
        now_ms = int(time.time() * 1000)
        items = []
        for rank, (video, score) in enumerate(scores.items(), 1):
            st = stats.get(video, {})
            items.append(
                {
                    "rank": rank,
                    "video_id": video,
                    "score": round(score, 4),
                    "views": st.get("views", 0),
                    "watch_time_ms": st.get("watch_time_ms", 0),
                    "avg_watch_time_ms": st.get("avg_watch_time_ms", 0.0),
                    "completion_rate": st.get("completion_rate", 0.0),
                    "likes": st.get("likes", 0),
                    "shares": st.get("shares", 0),
                    **_meta_fields(meta.get(video)),
                    "trend": trend_direction(st, now_ms),
                }
            )
        return self.json({"items": items})


def watch_distribution(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Views by watch ratio: the agent's histogram when it keeps one, else completed vs not."""
    hist = stats.get("watch_ratio_hist")
    if hist:
        labels = [f"{10 * i}-{10 * (i + 1)}%" for i in range(len(hist) - 1)] + [f"{10 * (len(hist) - 1)}%+"]
        return {"source": "histogram", "labels": labels, "views": hist}
    views, done = stats.get("views", 0), stats.get("completions", 0)
    ratio = int(round(_s.completion_ratio * 100))
    return {"source": "completions", "labels": [f"< {ratio}%", f">= {ratio}%"], "views": [views - done, done]}


def engagement_rates(counts: Mapping[str, Any]) -> dict[str, Any]:
    views = counts.get("views", 0)
    return {
        "views": views,
        "completion_rate": counts.get("completion_rate", 0.0),
        "avg_watch_time_ms": counts.get("avg_watch_time_ms", 0.0),
        **{f"{k}_rate": _ratio(counts.get(f"{k}s", 0), views) for k in ("like", "share", "comment", "skip")},
    }


def timeline(
    buckets: Mapping[int, Mapping[str, float]], since_s: int, until_s: int, step: int
) -> dict[str, Any]:
    t = list(range(since_s // step * step, until_s + 1, step))
    out: dict[str, Any] = {"step_s": step, "t": t}
    for field in ("views", "likes", "shares", "comments", "skips"):
        out[field] = [int(buckets.get(b, {}).get(field, 0)) for b in t]
    out["completion_rate"] = [
        _ratio(buckets.get(b, {}).get("completions", 0), v) for b, v in zip(t, out["views"], strict=True)
    ]
    out["engagement_rate"] = [
        _ratio(sum(buckets.get(b, {}).get(f, 0) for f in ("likes", "shares", "comments")), v)
        for b, v in zip(t, out["views"], strict=True)
    ]
    return out


@app.page("/api/videos/{video_id}/analytics")
class VideoAnalytics(web.View):
    @guarded("/api/videos/analytics")
    async def get(self, request: web.Request, video_id: str) -> web.Response:
        minutes = _int(request, "minutes", 30, 1, 24 * 60)
        stats = (await stores().video_stats([video_id])).get(video_id)
        meta = (await stores().video_meta([video_id])).get(video_id)
        if stats is None and meta is None:
            return self.json({"error": "unknown video", "video_id": video_id}, status=404)
        stats = {k: v for k, v in (stats or {}).items() if k not in ("trend", "trend_rank")}
        now = time.time()
        until = int(now)
        series = await stores().video_series(video_id, until - minutes * 60, until)
        nbrs = (await stores().neighbours_of([video_id], _int(request, "k", 10, 1, 100))).get(video_id, {})
        nbr_meta = await stores().video_meta(list(nbrs))
        windows = [{"name": "lifetime", **engagement_rates(stats)}]
        for key, name in (("window_long", "long"), ("window_short", "short")):
            if key in stats:
                w = stats[key]
                windows.append(
                    {
                        "name": name,
                        "start_ms": w["start_ms"],
                        "end_ms": w["end_ms"],
                        "current": w["end_ms"] > now * 1000,
                        **engagement_rates(w),
                    }
                )
        return self.json(
            {
                "video_id": video_id,
                "meta": _meta_fields(meta) if meta else None,
                "stats": stats or None,
                "trend": trend_direction(stats, int(now * 1000)),
                "watch_time": watch_distribution(stats),
                "windows": windows,
                "timeline": timeline(series, until - minutes * 60, until, stores().VIDEO_SERIES_STEP_S)
                if series
                else None,
                "similar": [
                    {"video_id": v, "score": round(s, 6), **_meta_fields(nbr_meta.get(v))}
                    for v, s in sorted(nbrs.items(), key=lambda kv: -kv[1])
                ],
            }
        )


@app.page("/api/videos")
class VideosMeta(web.View):
    """Metadata of up to 100 videos: GET /api/videos?ids=a,b,c."""

    @guarded("/api/videos")
    async def get(self, request: web.Request) -> web.Response:
        ids = [i for i in request.query.get("ids", "").split(",") if i][:100]
        meta = await stores().video_meta(ids)
        return self.json({"videos": {v: _meta_fields(m) for v, m in meta.items()}})


# --- recommendations explorer ---------------------------------------------------------------
@app.page("/api/users/{user_id}/history")
class UserHistory(web.View):
    @guarded("/api/users/history", "user")
    async def get(self, request: web.Request, user_id: str) -> web.Response:
        history, seen, overexposed = await stores().user_state(user_id)
        history = history[: _int(request, "k", 50, 1, 500)]
        meta = await stores().video_meta([e[0] for e in history])
        s = app.recstream_settings  # type: ignore[attr-defined]
        seen_n = seen_count(seen, s.seen_bloom_bits, s.seen_bloom_hashes)
        return self.json(
            {
                "user_id": user_id,
                "seen": seen_n,
                "overexposed": overexposed,
                "history": [
                    {"video_id": v, "ts": ts, "weight": w, **_meta_fields(meta.get(v))}
                    for v, ts, w in history
                ],
            }
        )


# --- model registry -------------------------------------------------------------------------
def _version_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    timings = doc.get("timings") or {}
    return {
        "version": doc.get("_id"),
        "status": doc.get("status"),
        "created_at": doc.get("created_at"),
        "activated_at": doc.get("activated_at"),
        "metrics": doc.get("metrics") or {},
        "baseline": (doc.get("baseline") or {}).get("popularity") or {},
        "data": doc.get("data") or {},
        "params": doc.get("params") or {},
        "gate": doc.get("gate"),
        "timings": timings,
        "blend": doc.get("blend") or {},
        "served": doc.get("served") or {},
        "tuning": {k: v for k, v in (doc.get("tuning") or {}).items() if k != "blend_trials"},
        "training_s": round(sum(v for v in timings.values() if isinstance(v, int | float)), 2),
    }


async def closed_loop() -> dict[str, Any] | None:
    """The newest closed-loop run: one row per strategy (written by recstream.producers.closed_loop)."""
    try:
        from recstream.producers.closed_loop import COLLECTION
    except ImportError:  # a build without the closed loop
        return None
    docs = await stores().find(COLLECTION, sort=[("created_at", -1)], limit=50)
    if not docs:
        return None
    run = [d for d in docs if d.get("run_id") == docs[0].get("run_id")]
    keep = (
        "strategy",
        "users",
        "impressions",
        "watch_time_ms",
        "completion_rate",
        "like_rate",
        "taste",
        "click_through",
        "repeat_exposure",
    )
    return {
        "run_id": docs[0].get("run_id"),
        "created_at": docs[0].get("created_at"),
        "config": docs[0].get("config"),
        "strategies": [{k: d.get(k) for k in keep} for d in run],
    }


@app.page("/api/model")
class Model(web.View):
    @guarded("/api/model")
    async def get(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace", model_store.DEFAULT_NAMESPACE)
        active = await model_store.get_active_version(stores().redis, namespace)
        versions, loop, error = [], None, None
        try:
            docs = await asyncio.wait_for(
                stores().model_versions(namespace, _int(request, "limit", 10, 1, 50)), 3
            )
            versions = [_version_summary(d) for d in docs]
            loop = await asyncio.wait_for(closed_loop(), 3)
        except Exception as exc:  # the registry is MongoDB: show what Redis knows and say why
            error = f"model registry unreachable: {exc or type(exc).__name__}"
        return self.json(
            json.loads(
                json.dumps(
                    {
                        "namespace": namespace,
                        "active_version": active,
                        "state": "active"
                        if active
                        else ("trained, none active" if versions else "no model trained yet"),
                        "active": next((v for v in versions if v["version"] == active), None),
                        "versions": versions,
                        "closed_loop": loop,
                        "error": error,
                    },
                    default=str,
                )
            )
        )


# --- pipeline health ------------------------------------------------------------------------
class FreshnessWindow:
    """p50/p99 of the freshness histogram over the last `window_s`, from snapshots of its buckets."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.snapshots: deque[tuple[float, list[tuple[float, float]]]] = deque()

    @staticmethod
    def buckets(histogram: Any) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) summed over the histogram's label sets."""
        out: dict[float, float] = {}
        for family in histogram.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    out[le] = out.get(le, 0.0) + sample.value
        return sorted(out.items())

    def read(self, histogram: Any, now: float) -> dict[str, Any]:
        current = self.buckets(histogram)
        self.snapshots.append((now, current))
        while len(self.snapshots) > 1 and self.snapshots[1][0] <= now - self.window_s:
            self.snapshots.popleft()
        base = dict(self.snapshots[0][1]) if self.snapshots[0][0] < now else {}
        delta = [(le, count - base.get(le, 0.0)) for le, count in current]
        total = delta[-1][1] if delta else 0
        return {
            "window_s": round(now - self.snapshots[0][0]) if base else None,
            "count": int(total),
            "p50_ms": quantile_ms(delta, 0.5),
            "p99_ms": quantile_ms(delta, 0.99),
        }


def quantile_ms(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket that holds rank q * count."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank, prev_le, prev_count = q * cumulative[-1][1], 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return round(prev_le * 1000, 1)
            width = count - prev_count
            return round((prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1)) * 1000, 1)
        prev_le, prev_count = le, count
    return None


class DeadLetters:
    """How many dead letters the topic holds (all workers' together) and the newest few, read by one
    group-less consumer of the dashboard's own (started on first use, stopped with the app)."""

    def __init__(self, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)  # one partition: kafka_admin.topic_specs
        self.consumer: AIOKafkaConsumer | None = None
        self.seen_end = -1
        self.recent: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()

    async def read(self, keep: int = 5) -> dict[str, Any]:
        async with self.lock:
            if self.consumer is None:
                consumer = AIOKafkaConsumer(
                    **client_kwargs(_s), enable_auto_commit=False, request_timeout_ms=5000
                )
                try:
                    await consumer.start()
                except BaseException:
                    await consumer.stop()
                    raise
                consumer.assign([self.tp])
                # Paused but while tailing: an assigned partition keeps a 500 ms long-poll fetch open,
                # and every offset lookup waited behind it (~0.9 s per /api/pipeline).
                consumer.pause(self.tp)
                self.consumer = consumer
            first = (await self.consumer.beginning_offsets([self.tp]))[self.tp]
            last = (await self.consumer.end_offsets([self.tp]))[self.tp]
            if last != self.seen_end:  # fetch letters only when there are new ones
                self.recent = await self._tail(max(first, last - keep), last) if last > first else []
                self.seen_end = last
            return {"topic": self.tp.topic, "total": last - first, "recent": self.recent}

    async def _tail(self, start: int, end: int) -> list[dict[str, Any]]:
        assert self.consumer is not None
        self.consumer.seek(self.tp, start)
        self.consumer.resume(self.tp)
        letters: list[dict[str, Any]] = []
        deadline = time.monotonic() + 2
        try:
            while len(letters) < end - start and time.monotonic() < deadline:
                for msgs in (await self.consumer.getmany(self.tp, timeout_ms=300)).values():
                    for m in msgs:
                        try:
                            doc = json.loads(m.value)
                        except ValueError:  # not written by us: show it raw
                            doc = {
                                "value": m.value.decode(errors="replace"),
                                "reason": "(not a DeadLetter record)",
                            }
                        letters.append(
                            {
                                k: doc.get(k)
                                for k in ("ts", "source_topic", "partition", "offset", "key", "reason")
                            }
                            | {"value": str(doc.get("value", ""))[:200]}
                        )
        finally:
            self.consumer.pause(self.tp)
        return letters[::-1]

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None


_freshness = FreshnessWindow()
_dead_letters = DeadLetters(topic_names(_s).dead_letters)
_SOURCE_TOPICS = {t for name, t in vars(topic_names(_s)).items() if name != "dead_letters"}


@app.on_before_shutdown.connect
async def _close_dead_letters(app, **kwargs) -> None:  # noqa: ANN001 - Faust signal signature
    await _dead_letters.close()


@app.page("/api/pipeline")
class Pipeline(web.View):
    @timed("/api/pipeline")
    async def get(self, request: web.Request) -> web.Response:
        try:
            deps = await asyncio.wait_for(stores().health(), 2.5)
        except TimeoutError:
            deps = {"redis": "timeout", "mongo": "timeout"}
        deps["kafka"] = "ok" if app.producer is not None and app.producer.started else "not connected"
        try:
            dead = await asyncio.wait_for(_dead_letters.read(), 3)
        except Exception as exc:
            dead = {
                "topic": _dead_letters.tp.topic,
                "total": None,
                "recent": [],
                "error": str(exc) or "timeout",
            }
            deps["kafka"] = f"error: {dead['error']}"
        if not default_access().grants("user", request.headers):  # payloads are per-user data
            dead["recent"] = [{**letter, "key": None, "value": HIDDEN} for letter in dead.get("recent", [])]
        lags = await update_consumer_lag()
        assigned: dict[str, int] = {}
        for tp in app.consumer.assignment() if app.consumer is not None else ():
            assigned[tp.topic] = assigned.get(tp.topic, 0) + 1
        histogram = getattr(metrics, "freshness", None)
        return self.json(
            {
                "status": "ok" if all(v == "ok" for v in deps.values()) else "degraded",
                "dependencies": deps,
                "worker": {
                    "port": _s.web_port,
                    "rebalancing": bool(app.rebalancing),
                    "assigned_partitions": assigned,
                },
                "consumer_lag": [
                    {"topic": t, "partition": p, "lag": lag}
                    for (t, p), lag in sorted(lags.items())
                    if t in _SOURCE_TOPICS
                ],
                "lag_total": sum(lag for (t, _p), lag in lags.items() if t in _SOURCE_TOPICS),
                "dead_letters": dead,
                "freshness": _freshness.read(histogram, time.time()) if histogram is not None else None,
                "events_processed": {
                    s.labels["type"]: int(s.value)
                    for f in metrics.events_processed.collect()
                    for s in f.samples
                    if s.name.endswith("_total")
                },
            }
        )
