"""The HTTP peers of the /recommendations benchmark: a bare aiohttp server on 127.0.0.1.

    python benchmarks/bare_aiohttp.py --port 8099 [--mode static|recommend]

`static` (the ceiling): a plain aiohttp handler that builds and serialises a response of the same
shape and size as a real /recommendations answer (20 items with scores and reasons) without reading
any state. What an HTTP view on this machine cannot beat.

`recommend`: the same handler calling recstream's own `recommend()` against the same Redis, outside
Faust (settings from the `RECSTREAM_*` environment). Between the two it splits the cost of serving into
"the recommendation logic + Redis" and "everything Faust adds around an aiohttp view".

The server runs until SIGTERM/SIGINT, or until --max-seconds (a bound so it never outlives a run).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


def static_app(k: int) -> web.Application:
    async def recommendations(request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        n = max(1, min(int(request.query.get("k", k)), 500))
        items = [
            {
                "video_id": f"v{i}",
                "score": round(1.0 - i / (n + 1), 6),
                "reasons": ["because you watched v12345" if i % 2 else "trending"],
            }
            for i in range(n)
        ]
        return web.json_response({"user_id": user_id, "items": items, "model_version": None})

    app = web.Application()
    app.router.add_get("/recommendations/{user_id}", recommendations)
    app.router.add_get("/health", lambda _request: _ok())
    return app


def recommend_app(k: int) -> web.Application:
    from recstream.recommend import recommend
    from recstream.settings import Settings
    from recstream.stores import Stores

    settings = Settings()
    stores = Stores(settings)

    async def recommendations(request: web.Request) -> web.Response:
        n = max(1, min(int(request.query.get("k", k)), 500))
        return web.json_response(await recommend(stores, settings, request.match_info["user_id"], n))

    async def close(_app: web.Application) -> None:
        await stores.close()

    app = web.Application()
    app.router.add_get("/recommendations/{user_id}", recommendations)
    app.router.add_get("/health", lambda _request: _ok())
    app.on_cleanup.append(close)
    return app


async def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(app: web.Application, port: int, max_seconds: float) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["static", "recommend"], default="static")
    parser.add_argument("--k", type=int, default=20, help="items per answer when the request has no ?k=")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long regardless")
    args = parser.parse_args()
    app = static_app(args.k) if args.mode == "static" else recommend_app(args.k)
    asyncio.run(serve(app, args.port, args.max_seconds))


if __name__ == "__main__":
    main()
