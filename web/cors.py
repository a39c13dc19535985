"""CORS for the origins an operator allows (`cors_origins`), and nothing for anyone else: without an
Access-Control-Allow-Origin header a browser does not let a page elsewhere read an answer, and a write
(application/json only) needs a preflight that only an allowed origin passes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "Content-Type, X-API-Key, Authorization"


def cors_middleware(origins: Iterable[str]) -> Callable:
    allowed = set(origins)

    @web.middleware
    async def cors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not (origin in allowed or "*" in allowed):
            return await handler(request)
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        response = web.Response(status=204) if preflight else await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        if preflight:
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    return cors
