"""The HTTP peers of the /recommendations benchmark: a bare aiohttp server on 127.0.0.1.

    python benchmarks/bare_aiohttp.py --port 8099 [--mode static] [--processes N]

`static` (the ceiling): a plain aiohttp handler that builds and serialises a response of the same
shape and size as a real /recommendations answer (20 items with scores and reasons) without reading
any state. What an HTTP view on this machine cannot beat.

(recstream's own serving without Faust is `recstream web`, measured by serving.py.)

`--processes N` (N > 1) forks N server processes that share the port (SO_REUSEPORT: the kernel spreads
new connections over them), each with its own event loop and app, as `recstream web --processes N`
does. The parent only waits for them and passes SIGTERM/SIGINT on.

The server runs until SIGTERM/SIGINT, or until --max-seconds (a bound so it never outlives a run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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


async def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(app: web.Application, port: int, max_seconds: float, reuse_port: bool = False) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port or None).start()
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
    parser.add_argument("--mode", choices=["static"], default="static")
    parser.add_argument("--k", type=int, default=20, help="items per answer when the request has no ?k=")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long regardless")
    parser.add_argument(
        "--processes", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT); default 1"
    )
    args = parser.parse_args()

    def run(reuse_port: bool) -> None:
        # The app is built in the process that serves it (its clients must not cross a fork).
        app = static_app(args.k)
        asyncio.run(serve(app, args.port, args.max_seconds, reuse_port))

    if args.processes <= 1:
        run(reuse_port=False)
        return
    children: list[int] = []
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:  # a server process: serve, then leave without running the parent's clean-up
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                run(reuse_port=True)
            except BaseException:  # noqa: BLE001 - reported on stderr, then the exit status says it
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()
