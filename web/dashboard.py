"""The operator dashboard: the page at `/`, its static files, and the JSON it shows (GET /api/*).

The page computes nothing: every number on it comes from these views (or from the client API in
web/api.py), which read what the agents materialise in Redis and the registry in MongoDB. Importing
this module registers them on the Faust app. The figures are computed in web/dashboard_data.py, the
dead letters read by web/dashboard_dead_letters.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faust import web
from redis.exceptions import RedisError

from recstream import metrics
from recstream.kafka.topics import topic_names
from recstream.redis_layout import seen_count
from recstream.serving import model_store
from recstream.streaming.app import app
from recstream.streaming.runtime import api, stores
from recstream.web.api import update_consumer_lag
from recstream.web.dashboard_data import (
    FreshnessWindow,
    closed_loop_run,
    engagement_windows,
    meta_fields,
    overview,
    overview_span,
    timeline,
    trend_direction,
    trending_item,
    version_summary,
    watch_distribution,
)
from recstream.web.dashboard_dead_letters import DeadLetters
from recstream.web.handlers import default_access, timed

_s = app.recstream_settings  # type: ignore[attr-defined]
log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

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
@app.page("/api/overview")
class Overview(web.View):
    @guarded("/api/overview")
    async def get(self, request: web.Request) -> web.Response:
        minutes, step = _int(request, "minutes", 5, 1, 60), _int(request, "step", 1, 1, 60)
        start, end = overview_span(minutes, step, time.time())
        per_second, per_minute = await stores().overview(start, end - 1)
        active = await stores().active_users(start, end - 1)
        return self.json(overview(per_second, per_minute, active, start, end, step))


# --- trending and per-video analytics -------------------------------------------------------
@app.page("/api/trending")
class TrendingNow(web.View):
    """GET /trending's list (same scores, same counters) with metadata and trend direction."""

    @guarded("/api/trending")
    async def get(self, request: web.Request) -> web.Response:
        k = _int(request, "k", 10, 1, 100)
        scores = await api().trending_scores(k)
        stats, meta = await stores().video_stats(list(scores)), await stores().video_meta(list(scores))
        now_ms = int(time.time() * 1000)
        items = [
            trending_item(rank, video, score, stats.get(video, {}), meta.get(video), now_ms)
            for rank, (video, score) in enumerate(scores.items(), 1)
        ]
        return self.json({"items": items})


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
        return self.json(
            {
                "video_id": video_id,
                "meta": meta_fields(meta) if meta else None,
                "stats": stats or None,
                "trend": trend_direction(stats, int(now * 1000)),
                "watch_time": watch_distribution(stats, _s.completion_ratio),
                "windows": engagement_windows(stats, now),
                "timeline": timeline(series, until - minutes * 60, until, stores().VIDEO_SERIES_STEP_S)
                if series
                else None,
                "similar": [
                    {"video_id": v, "score": round(s, 6), **meta_fields(nbr_meta.get(v))}
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
        return self.json({"videos": {v: meta_fields(m) for v, m in meta.items()}})


# --- recommendations explorer ---------------------------------------------------------------
@app.page("/api/users/{user_id}/history")
class UserHistory(web.View):
    @guarded("/api/users/history", "user")
    async def get(self, request: web.Request, user_id: str) -> web.Response:
        history, seen, overexposed = await stores().user_state(user_id)
        s = app.recstream_settings  # type: ignore[attr-defined]
        # The history, plus what left it for the seen filter (an estimate; -1 when the filter is full).
        in_filter = seen_count(seen, s.seen_bloom_bits, s.seen_bloom_hashes)
        seen_n = -1 if in_filter < 0 else len(history) + in_filter
        history = history[: _int(request, "k", 50, 1, 500)]
        meta = await stores().video_meta([e[0] for e in history])
        return self.json(
            {
                "user_id": user_id,
                "seen": seen_n,
                "overexposed": overexposed,
                "history": [
                    {"video_id": v, "ts": ts, "weight": w, **meta_fields(meta.get(v))} for v, ts, w in history
                ],
            }
        )


# --- model registry -------------------------------------------------------------------------
async def closed_loop() -> dict[str, Any] | None:
    """The newest closed-loop run: one row per strategy (written by recstream.producers.closed_loop)."""
    try:
        from recstream.producers.closed_loop import COLLECTION
    except ImportError:  # a build without the closed loop
        return None
    return closed_loop_run(await stores().find(COLLECTION, sort=[("created_at", -1)], limit=50))


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
            versions = [version_summary(d) for d in docs]
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
_freshness = FreshnessWindow()
_dead_letters = DeadLetters(_s)
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
                "freshness": _freshness.read(metrics.freshness, time.time()),
                "events_processed": {
                    s.labels["type"]: int(s.value)
                    for f in metrics.events_processed.collect()
                    for s in f.samples
                    if s.name.endswith("_total")
                },
            }
        )
