"""The web role: the JSON API without agents, so request latency never waits on an agent's batch.

    recstream web [--host 127.0.0.1] [--port 8000] [--processes N]

Each process keeps its own serving state (`recstream.serving.state`), refreshed from Redis in the background,
and reads only the user's own history and seen filter per request. N processes share the port
(SO_REUSEPORT: the kernel spreads connections over them); their /metrics are combined (see
`recstream.metrics`). A web process answers from its last state while Redis or the workers are down,
and says how old that state is in /health. The dashboard is served by the worker (`recstream worker`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from recstream import metrics
from recstream.settings import Settings, get_settings
from recstream.web.access import require_keys

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 100_000
"""Allocations between two young-generation collections in a web process (CPython's default: 700).
Each answer allocates a few hundred short-lived objects (the history read, lists and dicts of the
answer); at the default a collection ran every two or three answers and promoted what the answers in
flight held, ~18 us of collector time per answer in the serving benchmark (`recstream_gc_seconds_total`),
~11 us at this threshold. The serving state itself is frozen out of the collector's reach
(`ServingState.refresh`); what answers allocate is acyclic and freed by reference counting."""


def build_app(settings: Settings) -> web.Application:
    from recstream.kafka.batches import BatchProducer
    from recstream.serving.foldin import ModelCache
    from recstream.serving.state import ServingState
    from recstream.serving.stores import Stores
    from recstream.web.handlers import Api, json_response
    from recstream.web.openapi import openapi_json

    stores = Stores(settings)
    models = ModelCache.from_url(settings.redis_url, check_interval_s=settings.model_check_interval_s)
    state = ServingState(settings, models)
    producer = BatchProducer(settings)
    api = Api(settings, lambda: stores, lambda: producer, lambda: state, lambda: models)

    async def health(_request: web.Request) -> web.Response:
        body = await api.health()
        ok = all(v == "ok" for v in body["dependencies"].values()) and state.loaded.is_set()
        return json_response(
            {"status": "ok" if ok else "degraded", "role": "web", "pid": os.getpid(), **body},
            200 if ok else 503,
        )

    async def openapi_view(_request: web.Request) -> web.Response:
        return web.Response(body=openapi_json(settings), content_type="application/json")

    async def metrics_view(_request: web.Request) -> web.Response:
        state.export_ages()
        return web.Response(body=metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def on_startup(_app: web.Application) -> None:
        state.start()

    async def on_cleanup(_app: web.Application) -> None:
        await state.close()
        await api.close()  # the impressions still queued, before the producer stops
        await producer.close()
        await models.close()
        await stores.close()

    from recstream.web.cors import cors_middleware

    app = web.Application(
        client_max_size=settings.max_body_bytes + 1,  # handlers read the body themselves
        middlewares=[cors_middleware(settings.cors_origins)] if settings.cors_origins else [],
    )
    app.router.add_get("/recommendations/{user_id}", api.recommendations)  # first: the hot route
    app.router.add_post("/events", api.post_events)
    app.router.add_post("/videos", api.post_videos)
    app.router.add_delete("/videos/{video_id}", api.delete_video)
    app.router.add_delete("/users/{user_id}", api.delete_user)
    app.router.add_get("/trending", api.trending)
    app.router.add_get("/videos/{video_id}/stats", api.video_stats)
    app.router.add_get("/videos/{video_id}/similar", api.similar)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi_view)  # the routes above, documented (web.openapi)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    log.info("web process %d serving on http://%s:%d", os.getpid(), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run_one(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    import gc

    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    metrics.track_gc()  # the collector's time in /metrics
    if settings.event_loop == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(serve(settings, host, port, reuse_port))


def _run_many(host: str, port: int, processes: int) -> int:
    """Start `processes` children on one port and stay until they end (or until told to stop)."""
    metrics_dir = tempfile.mkdtemp(prefix="recstream-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    cmd = [sys.executable, "-m", "recstream.web.server", "--host", host, "--port", str(port), "--reuse-port"]
    children = [subprocess.Popen(cmd, env=env) for _ in range(processes)]

    def stop(_signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        codes = [child.wait() for child in children]
    finally:
        stop(0, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return max(codes, default=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default: RECSTREAM_WEB_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: RECSTREAM_SERVE_PORT, 8000)")
    parser.add_argument("--processes", type=int, default=1, help="web processes sharing the port (default 1)")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for children


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    logging.basicConfig(
        level=logging.INFO if settings.log_level in ("debug", "info") else logging.WARNING,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    )
    host = args.host or settings.web_host
    port = args.port or settings.serve_port
    if not args.reuse_port:  # the parent checks once for its children
        require_keys(settings, host)
    if args.processes > 1:
        return _run_many(host, port, args.processes)
    _run_one(settings, host, port, args.reuse_port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recstream web", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
