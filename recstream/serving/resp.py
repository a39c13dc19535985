"""A minimal pipelined Redis client for the one read on the serving path (the user's own state).

redis.asyncio spends ~100 µs of Python per command (connection pool, command packing, response
parsing layers), a third of a recommendation's budget. Here one connection per process carries every
request's MGET back to back: a caller writes its command and awaits the reply that comes back in the
same order (RESP replies are in request order on a connection), parsed by hiredis; the commands of
one event-loop iteration go out in one write. A dead connection
fails what it carried and the next call opens a new one; a reply later than `timeout_s` fails every
request waiting on that connection (Redis hung) and drops it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from urllib.parse import urlparse

import hiredis


def _pack(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, client: PipelinedRedis) -> None:
        self.client = client
        self.reader = hiredis.Reader()
        self.pending: deque[tuple[asyncio.Future, float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []  # commands of this loop iteration: one write for all of them

    def flush(self) -> None:
        if self.outgoing and self.transport is not None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while (reply := self.reader.gets()) is not False:
            future, _sent = pending.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"Redis connection lost: {exc}"))

    def fail(self, exc: Exception) -> None:
        while self.pending:
            future, _sent = self.pending.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.client._protocol is self:
            self.client._protocol = None
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    """`mget` over one pipelined connection to the Redis of a `redis://[:password@]host:port/db` URL."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", ""):
            raise ValueError(f"unsupported Redis URL for the pipelined client: {url!r}")
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 6379
        self.db = int((parsed.path or "/0").strip("/") or 0)
        self.username, self.password = parsed.username, parsed.password
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None
        self._watchdog: asyncio.Task | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _transport, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port), self.timeout_s
        )
        setup = []
        if self.password:
            user = [self.username.encode()] if self.username else []
            setup.append(_pack(b"AUTH", *user, self.password.encode()))
        if self.db:
            setup.append(_pack(b"SELECT", str(self.db).encode()))
        for command in setup:
            await asyncio.wait_for(self._send(protocol, command), self.timeout_s)
        if self._watchdog is None:
            self._watchdog = loop.create_task(self._watch(), name="redis-pipeline-watchdog")
        return protocol

    async def _protocol_ready(self) -> _Protocol:
        if self._protocol is not None:
            return self._protocol
        if self._connecting is None:  # one connection attempt, however many callers wait for it
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            protocol = await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None
        self._protocol = protocol
        return protocol

    @staticmethod
    def _send(protocol: _Protocol, command: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        protocol.pending.append((future, time.monotonic()))
        if not protocol.outgoing:
            loop.call_soon(protocol.flush)
        protocol.outgoing.append(command)
        return future

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        protocol = self._protocol or await self._protocol_ready()
        return await self._send(protocol, _pack(b"MGET", *(k.encode() for k in keys)))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.timeout_s / 4)
            protocol = self._protocol
            if (
                protocol is not None
                and protocol.pending
                and time.monotonic() - protocol.pending[0][1] > self.timeout_s
            ):
                protocol.fail(TimeoutError(f"no reply from Redis in {self.timeout_s}s"))

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._protocol is not None:
            self._protocol.fail(ConnectionError("client closed"))
