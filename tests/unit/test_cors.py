import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from recstream.settings import Settings
from recstream.web.cors import cors_middleware


async def _exchange(origins: list[str]) -> dict[str, tuple[int, dict]]:
    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[cors_middleware(origins)])
    app.router.add_post("/events", hello)
    out = {}
    async with TestClient(TestServer(app)) as client:
        for name, method, headers in (
            (
                "preflight",
                "OPTIONS",
                {
                    "Origin": "https://studio.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type, x-api-key",
                },
            ),
            ("post", "POST", {"Origin": "https://studio.example", "Content-Type": "application/json"}),
            ("stranger", "POST", {"Origin": "https://evil.example", "Content-Type": "application/json"}),
            (
                "stranger_preflight",
                "OPTIONS",
                {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            ),
        ):
            async with client.request(method, "/events", headers=headers, data=b"{}") as resp:
                out[name] = (resp.status, dict(resp.headers))
    return out


def test_only_configured_origins_get_cors_headers() -> None:
    got = asyncio.run(_exchange(["https://studio.example"]))
    status, headers = got["preflight"]
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://studio.example"
    assert (
        "POST" in headers["Access-Control-Allow-Methods"]
        and "X-API-Key" in headers["Access-Control-Allow-Headers"]
    )
    assert got["post"][0] == 200 and got["post"][1]["Access-Control-Allow-Origin"] == "https://studio.example"
    assert got["stranger"][0] == 200 and "Access-Control-Allow-Origin" not in got["stranger"][1]
    assert (
        got["stranger_preflight"][0] == 405
        and "Access-Control-Allow-Origin" not in got["stranger_preflight"][1]
    )


def test_the_web_role_has_cors_only_when_configured() -> None:
    from recstream.web.server import build_app

    assert len(build_app(Settings()).middlewares) == 0
    assert len(build_app(Settings(cors_origins=["https://studio.example"])).middlewares) == 1
