"""The JSON API's handlers, free of Faust: the worker's views (`web.api`) and the web role
(`web.server`) both call these with an aiohttp request and send back what they return."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from recstream import metrics
from recstream.kafka.batches import BatchProducer, partition_for
from recstream.kafka.topics import topic_names
from recstream.records import (
    FUTURE_SKEW_CONTEXT,
    ID_PATTERN,
    Id,
    Interaction,
    UserErasure,
    Video,
    describe_errors,
    encode,
    now_ms,
)
from recstream.scoring import trend_score_now
from recstream.serving.foldin import ModelCache
from recstream.serving.recommend import recommend
from recstream.serving.state import ServingState
from recstream.serving.stores import Stores
from recstream.settings import Settings, get_settings
from recstream.streamstate import StreamParams, new_engagement, stats_document
from recstream.web.access import Access, Refused

MAX_EVENTS = 10_000
"""Events per POST /events; the body limit (`max_body_bytes`, 8 MiB) holds 10,000 of the largest."""
MAX_VIDEOS = 1_000
"""Videos per POST /videos: a video with the longest caption, hashtags and ids is 5.8 kB."""
ID = TypeAdapter(Id)
ID_RE = re.compile(ID_PATTERN)
MAX_K = 500
REMOVED_SLACK = 20
"""Trending reads this many more than asked, for the taken-down videos it drops."""
STRATEGIES = ("random", "trending", "itemcf", "als", "hybrid")


IMPRESSIONS_FLUSH_S = 0.02
"""How long answers' impressions wait in the process before they go to the producer together: one send
per partition per flush instead of one per answer (a send per answer, with its future and callback,
took ~8-10 % of a web process's CPU in py-spy at ~2,000 answers/s; batched, ~2-3 %)."""


def _count_lost_impressions(n: int, future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        metrics.impressions_lost.inc(n)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def refusal(route: str, exc: BadRequest | Refused) -> web.Response:
    """The 4xx answer of a refused request, counted in `recstream_http_refused_total` by its reason."""
    metrics.requests_refused.labels(route=route, reason=exc.reason).inc()
    if isinstance(exc, Refused):
        response = json_response({"error": exc.message}, exc.status)
        response.headers.update(exc.headers)
        return response
    return json_response(exc.body, exc.status)


def timed(route: str, scope: str = "public") -> Callable:
    """Check the caller may use `scope` (`recstream.web.access`), time the handler in
    `recstream_request_latency_seconds`, and answer a refusal it raises."""
    histogram = metrics.request_latency.labels(route=route)

    def wrap(handler: Callable[..., Awaitable[web.Response]]) -> Callable[..., Awaitable[web.Response]]:
        async def inner(owner: Any, request: web.Request, *args: Any, **kwargs: Any) -> web.Response:
            started = time.perf_counter()
            try:  # owner: an Api, or one of the dashboard's Faust views
                (owner.access if isinstance(owner, Api) else default_access()).check(scope, request.headers)
                return await handler(owner, request, *args, **kwargs)
            except (BadRequest, Refused) as exc:
                return refusal(route, exc)
            finally:
                histogram.observe(time.perf_counter() - started)

        inner.__name__ = handler.__name__
        inner.__doc__ = handler.__doc__
        return inner

    return wrap


@functools.cache
def default_access() -> Access:
    """The access rules of this process's settings, for views that are not `Api` methods."""
    return Access(get_settings())


class BadRequest(Exception):
    """A 4xx answer: `reason` labels it in /metrics, `body` says what is wrong (and which field)."""

    def __init__(self, status: int, reason: str, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status, self.reason, self.body = status, reason, body


def _k(request: web.Request, default: int = 20) -> int:
    try:
        k = int(request.query.get("k", default))
    except ValueError as exc:
        raise BadRequest(422, "invalid_parameter", {"error": "k must be an integer", "field": "k"}) from exc
    return max(1, min(k, MAX_K))


class Api:
    """The handlers over one process's clients and serving state."""

    def __init__(
        self,
        settings: Settings,
        stores: Callable[[], Stores],
        producer: Callable[[], BatchProducer],
        state: Callable[[], ServingState],
        models: Callable[[], ModelCache],
    ) -> None:
        self.settings = settings
        self.names = topic_names(settings)
        self._stores, self._producer, self._state, self._models = stores, producer, state, models
        self.access = Access(settings)
        # Impressions waiting for the next flush (`_flush_shown`), in answer order: (key, value).
        self._shown: list[tuple[bytes, bytes]] = []
        self._shown_task: asyncio.Task | None = None

    async def _loaded_state(self) -> ServingState:
        """The serving state, ready to serve from (`ServingState.ready`)."""
        state = self._state()
        await state.ready()
        return state

    # --- ingestion ------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes:
        """The request body, refused (413, the limit in the message) past `max_body_bytes` before more of it
        is read; the same limit in the worker and the web role, whatever their aiohttp defaults."""
        limit = self.settings.max_body_bytes
        too_large = BadRequest(
            413,
            "body_too_large",
            {"error": f"request body larger than {limit:,} bytes (max_body_bytes)", "limit_bytes": limit},
        )
        if (request.content_length or 0) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.content.iter_any():  # as the body arrives, until its end
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_items(
        self, request: web.Request, model: type[BaseModel], plural: str, max_items: int
    ) -> list:
        """Parse one object or {plural: [...]}; all or nothing (any invalid item: 4xx, nothing produced)."""
        if request.content_type != "application/json":  # a form or text/plain post from a web page: no
            raise BadRequest(
                415,
                "content_type",
                {  # CORS preflight would have guarded it
                    "error": f"Content-Type must be application/json, not {request.content_type!r}"
                },
            )
        raw = await self._body(request)
        try:
            body = orjson.loads(raw or b"null")  # refuses non-UTF-8 and nesting deeper than 1,024 too
        except ValueError as exc:
            raise BadRequest(
                400, "malformed_json", {"error": "body is not valid UTF-8 JSON", "detail": str(exc)}
            ) from exc
        if isinstance(body, dict) and plural in body:
            items = body[plural]
            if not isinstance(items, list):
                raise BadRequest(
                    422, "invalid_body", {"error": f"'{plural}' must be a list", "field": plural}
                )
        elif isinstance(body, dict):
            items = [body]
        else:
            raise BadRequest(422, "invalid_body", {"error": f'expected an object or {{"{plural}": [...]}}'})
        if len(items) > max_items:
            raise BadRequest(
                413,
                "too_many_items",
                {"error": f"at most {max_items:,} {plural} per request", "field": plural, "limit": max_items},
            )
        context = {FUTURE_SKEW_CONTEXT: now_ms() + int(self.settings.max_future_skew_s * 1000)}
        records, errors = [], []
        for index, item in enumerate(items):
            try:
                records.append(model.model_validate(item, context=context))
            except ValidationError as exc:
                errors += describe_errors(exc, index)
        if errors:
            raise BadRequest(422, "validation", {"error": "validation failed", "details": errors})
        return records

    async def publish(self, topic: str, partitions: int, records: list[tuple[str, bytes]]) -> None:
        """Produce keyed records one batch per partition, in request order within each partition, and
        return once Kafka acknowledged them all (accepted = durable, not just buffered)."""
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in records:
            raw_key = key.encode()
            by_partition.setdefault(partition_for(raw_key, partitions), []).append((raw_key, value))
        futures = []
        for partition, batch in by_partition.items():
            futures += await self._producer().send(topic, partition, batch)
        await asyncio.gather(*futures)

    @timed("/events", "write")
    async def post_events(self, request: web.Request) -> web.Response:
        records = await self._read_items(request, Interaction, "events", MAX_EVENTS)
        self.access.admit_writes(request.remote or "unknown", len(records))
        await self.publish(
            self.names.interactions,
            self.settings.interactions_partitions,
            [(r.user_id, encode(r)) for r in records],
        )
        metrics.events_accepted.inc(len(records))
        return json_response({"accepted": len(records)}, 202)

    @timed("/videos", "write")
    async def post_videos(self, request: web.Request) -> web.Response:
        records = await self._read_items(request, Video, "videos", MAX_VIDEOS)
        self.access.admit_writes(request.remote or "unknown", len(records))
        await self.publish(
            self.names.videos,
            self.settings.interactions_partitions,
            [(r.video_id, encode(r)) for r in records],
        )
        return json_response({"accepted": len(records)}, 202)

    @staticmethod
    def _path_id(request: web.Request, name: str) -> str:
        value = request.match_info[name]
        try:
            return ID.validate_python(value)
        except ValidationError as exc:
            raise BadRequest(
                422,
                "validation",
                {
                    "error": "validation failed",
                    "details": [{**d, "field": name} for d in describe_errors(exc)],
                },
            ) from exc

    @timed("/videos/delete", "write")
    async def delete_video(self, request: web.Request) -> web.Response:
        """Take a video down: a tombstone on the compacted videos topic; every process stops serving it
        within its refresh interval."""
        video_id = self._path_id(request, "video_id")
        self.access.admit_writes(request.remote or "unknown", 1)
        await self.publish(self.names.videos, self.settings.interactions_partitions, [(video_id, None)])
        return json_response({"video_id": video_id, "deleted": True}, 202)

    @timed("/users/delete", "write")
    async def delete_user(self, request: web.Request) -> web.Response:
        """Erase a user: an erasure after their events on the interactions topic (their partition), which
        removes their history from the table, Redis and MongoDB."""
        user_id = self._path_id(request, "user_id")
        self.access.admit_writes(request.remote or "unknown", 1)
        await self.publish(
            self.names.interactions,
            self.settings.interactions_partitions,
            [(user_id, encode(UserErasure(erase_user=user_id)))],
        )
        return json_response({"user_id": user_id, "erased": True}, 202)

    # --- serving --------------------------------------------------------------------------
    @timed("/recommendations")
    async def recommendations(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        strategy = request.query.get("strategy")  # overrides the user's A/B bucket (explorer, debugging)
        if strategy is not None and strategy not in STRATEGIES:
            raise BadRequest(
                422,
                "invalid_parameter",
                {"error": f"strategy must be one of {list(STRATEGIES)}", "field": "strategy"},
            )
        preview = request.query.get("preview", "false")
        if preview not in ("true", "false"):
            raise BadRequest(
                422, "invalid_parameter", {"error": "preview must be true or false", "field": "preview"}
            )
        k = _k(request)
        state = await self._loaded_state()
        degraded = None
        try:
            history, seen, overexposed = await self._stores().user_state(user_id)
        except (OSError, TimeoutError) as exc:
            # Keep answering from this process's state, as for a new user, and say so: the list may
            # repeat what the user saw until Redis is back (/health says "degraded" meanwhile).
            history, seen, overexposed = [], b"", []
            degraded = f"redis unreachable ({exc}): the user's history is unknown"
            metrics.degraded_answers.inc()
        body = recommend(
            state, self.settings, user_id, k, history, seen, self._models(), strategy, overexposed
        )
        if degraded:
            body["degraded"] = degraded
        if body["items"] and self.settings.publish_impressions and preview == "false":
            self._publish_shown(user_id, body)
        return json_response(body)

    def _publish_shown(self, user_id: str, body: dict[str, Any]) -> None:
        """What this answer showed, to the impressions topic (`agents.impressions`): queued, not waited
        for, so serving never waits on Kafka; a lost message only means one showing goes uncounted.
        Answers of the next `IMPRESSIONS_FLUSH_S` go to the producer together (`_flush_shown`), each
        partition's in answer order."""
        if len(user_id) > 128 or not ID_RE.fullmatch(user_id):  # no events can exist for such an id
            return
        value = orjson.dumps(
            {
                "user_id": user_id,
                "videos": [i["video_id"] for i in body["items"]],
                "strategy": body["strategy"],
                "model_version": body["model_version"],
                "ts": int(time.time() * 1000),
            }
        )
        self._shown.append((user_id.encode(), value))
        if self._shown_task is None:
            self._shown_task = asyncio.get_running_loop().create_task(self._flush_shown())

    async def _flush_shown(self) -> None:
        """Hand the queued impressions to the producer, one send per partition, until none are queued."""
        try:
            while self._shown:
                await asyncio.sleep(IMPRESSIONS_FLUSH_S)
                await self._send_shown()
        finally:
            self._shown_task = None

    async def _send_shown(self) -> list[asyncio.Future]:
        queued, self._shown = self._shown, []
        partitions = self.settings.interactions_partitions
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in queued:
            by_partition.setdefault(partition_for(key, partitions), []).append((key, value))
        sent: list[asyncio.Future] = []
        for partition, records in by_partition.items():
            try:
                futures = await self._producer().send(self.names.impressions, partition, records)
            except Exception:  # Kafka unreachable: these showings go uncounted, serving goes on
                metrics.impressions_lost.inc(len(records))
                continue
            for future in futures:
                future.add_done_callback(functools.partial(_count_lost_impressions, len(records)))
            sent += futures
        return sent

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send what is still queued and wait (at most `timeout_s`) until Kafka took it."""
        if self._shown_task is not None:
            self._shown_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._shown_task
        if self._shown:
            sent = await self._send_shown()
            if sent:
                await asyncio.wait(sent, timeout=timeout_s)

    async def trending_scores(self, k: int) -> dict[str, float]:
        """The k best trending videos now, none taken down (their events may still rank them)."""
        now = int(time.time() * 1000)
        top = await self._stores().top_trending(k + REMOVED_SLACK)
        removed = (await self._loaded_state()).removed_among([v for v, _r in top])
        scores: dict[str, float] = {}
        for v, rank in top:
            if v not in removed and len(scores) < k:
                scores[v] = trend_score_now(rank, now, self.settings.trending_half_life_s)
        return scores

    @timed("/trending")
    async def trending(self, request: web.Request) -> web.Response:
        k = _k(request)
        scores = await self.trending_scores(k)
        stats = await self._stores().video_stats(list(scores))
        items = []
        for video, score in scores.items():
            st = stats.get(video, {})
            items.append(
                {
                    "video_id": video,
                    "score": round(score, 4),
                    "views": st.get("views", 0),
                    "watch_time_ms": st.get("watch_time_ms", 0),
                    "completion_rate": st.get("completion_rate", 0.0),
                    "likes": st.get("likes", 0),
                }
            )
        return json_response({"items": items})

    @timed("/videos/stats")
    async def video_stats(self, request: web.Request) -> web.Response:
        video_id = request.match_info["video_id"]
        stats = (await self._stores().video_stats([video_id])).get(video_id)
        if stats is None:
            meta = await self._stores().video_meta([video_id])
            if video_id not in meta:
                return json_response({"error": "unknown video", "video_id": video_id}, 404)
            # Published, no event yet: the document of an empty state, its windows the current ones.
            empty = new_engagement()
            empty["l"] = int(time.time() * 1000)
            stats = {
                **stats_document(video_id, empty, StreamParams.from_settings(self.settings)),
                "last_event_ms": 0,
            }
        now_ms = int(time.time() * 1000)
        for name in ("window_short", "window_long"):
            window = stats.get(name)
            if window is not None:
                window["current"] = window["end_ms"] > now_ms  # a past window: no events since
        stats.pop("trend", None)
        stats.pop("trend_rank", None)
        return json_response(stats)

    @timed("/videos/similar")
    async def similar(self, request: web.Request) -> web.Response:
        video_id = request.match_info["video_id"]
        k = _k(request)
        nbrs = (await self._stores().neighbours_of([video_id], k)).get(video_id, {})
        removed = (await self._loaded_state()).removed_among(list(nbrs))
        items = [
            {"video_id": v, "score": round(s, 6)}
            for v, s in sorted(nbrs.items(), key=lambda kv: -kv[1])
            if v not in removed
        ]
        return json_response({"video_id": video_id, "items": items})

    async def health(self) -> dict[str, Any]:
        """Dependencies and the serving state's age (the caller adds its role's own fields)."""
        deps = await self._stores().health()
        state = self._state()
        return {
            "dependencies": deps,
            "serving_state": {
                "loaded": state.loaded.is_set(),
                "age_s": state.ages(),
                "model_version": self._models().version,
                "videos": len(state.ids),
                "neighbour_lists": state.neighbour_lists,
            },
        }
