"""The JSON API of a worker: its Faust views call the shared handlers (`web.handlers`), which the web
role (`web.server`) serves too."""

from __future__ import annotations

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST

from recstream import metrics
from recstream.streaming.app import app
from recstream.streaming.runtime import api, serving
from recstream.web.openapi import openapi_json


@app.page("/events")
class Events(web.View):
    async def post(self, request: web.Request) -> web.Response:
        return await api().post_events(request)


@app.page("/videos")
class Videos(web.View):
    async def post(self, request: web.Request) -> web.Response:
        return await api().post_videos(request)


@app.page("/videos/{video_id}")
class Video(web.View):
    async def delete(self, request: web.Request, video_id: str) -> web.Response:
        return await api().delete_video(request)


@app.page("/users/{user_id}")
class User(web.View):
    async def delete(self, request: web.Request, user_id: str) -> web.Response:
        return await api().delete_user(request)


@app.page("/recommendations/{user_id}")
class Recommendations(web.View):
    async def get(self, request: web.Request, user_id: str) -> web.Response:
        return await api().recommendations(request)


@app.page("/trending")
class Trending(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return await api().trending(request)


@app.page("/videos/{video_id}/stats")
class VideoStats(web.View):
    async def get(self, request: web.Request, video_id: str) -> web.Response:
        return await api().video_stats(request)


@app.page("/videos/{video_id}/similar")
class Similar(web.View):
    async def get(self, request: web.Request, video_id: str) -> web.Response:
        return await api().similar(request)


@app.page("/health")
class Health(web.View):
    async def get(self, request: web.Request) -> web.Response:
        body = await api().health()
        deps = body["dependencies"]
        deps["kafka"] = "ok" if app.producer is not None and app.producer.started else "not connected"
        ok = all(v == "ok" for v in deps.values())
        assigned: dict[str, int] = {}
        if app.consumer is not None:
            for tp in app.consumer.assignment():
                assigned[tp.topic] = assigned.get(tp.topic, 0) + 1
        return self.json(
            {
                "status": "ok" if ok else "degraded",
                "role": "worker",
                **body,
                "rebalancing": bool(app.rebalancing),
                "assigned_partitions": assigned,
            },
            status=200 if ok else 503,
        )


@app.page("/openapi.json")
class OpenApi(web.View):
    """The API's OpenAPI document (`web.openapi`: the same as the web role's)."""

    async def get(self, request: web.Request) -> web.Response:
        return self.bytes(
            openapi_json(app.recstream_settings),  # type: ignore[attr-defined]
            content_type="application/json",
        )


@app.page("/metrics")
class Metrics(web.View):
    async def get(self, request: web.Request) -> web.Response:
        await update_consumer_lag()
        serving().export_ages()
        return self.bytes(metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def update_consumer_lag() -> dict[tuple[str, int], int]:
    """Lag per assigned partition: the partition's end offset minus our committed position."""
    consumer = app.consumer
    lags: dict[tuple[str, int], int] = {}
    if consumer is None:
        return lags
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog"):  # read by recovery, never committed: not a lag
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        committed = consumer._committed_offset.get(tp)
        lag = max(0, (highwater or 0) - ((committed + 1) if committed is not None else 0))
        metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
        lags[(tp.topic, tp.partition)] = lag
    return lags
