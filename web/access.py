"""Who may call what: API keys per scope, a per-client rate limit on writes.

Scopes: `write` (POST /events, POST /videos) needs the write key; `user` (per-user reads: a user's
history, dead-letter payloads) the read or the write key; `public` (recommendations, trending, stats,
similar, the dashboard) is open when `public_reads` is on, else as `user`. A key comes in `X-API-Key` or
`Authorization: Bearer`. With no key set, a scope is open: allowed only on a loopback address, with a
warning at start (`require_keys`); beyond loopback a server without keys refuses to start.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

from recstream.settings import Settings

log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("localhost",)


class Refused(Exception):
    """A request the access rules refuse: HTTP `status`, a `reason` for /metrics, a message, headers."""

    def __init__(
        self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, dict(headers or {})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_keys(settings: Settings, host: str) -> None:
    """Refuse to serve beyond loopback without keys; warn when serving open on loopback."""
    missing = [name for name in ("write_api_key", "read_api_key") if getattr(settings, name) is None]
    if not missing:
        return
    if not is_loopback(host):
        raise SystemExit(
            f"refusing to serve on {host} without {' and '.join(m.upper() for m in missing)}: "
            f"set RECSTREAM_{missing[0].upper()} (and the other) or bind 127.0.0.1"
        )
    log.warning(
        "no %s set: the API is open to anyone who can reach %s (loopback only)", " / ".join(missing), host
    )


class RateLimiter:
    """A token bucket of events per client address: `rate` per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str, n: int, now: float | None = None) -> float:
        """0 when `n` events may pass now (they are counted), else the seconds until they may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        cost = min(n, self.burst)  # a request larger than the burst waits for a full bucket
        wait = 0.0 if tokens >= cost else (cost - tokens) / self.rate
        self.buckets[client] = (tokens - cost if wait == 0 else tokens, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)  # forget the longest-idle client
        return wait


class Access:
    def __init__(self, settings: Settings) -> None:
        def secret(name: str) -> bytes | None:
            value = getattr(settings, name)
            return value.get_secret_value().encode() if value is not None else None

        self.write_key, self.read_key = secret("write_api_key"), secret("read_api_key")
        self.public_reads = settings.public_reads
        self.limiter = RateLimiter(settings.write_rate_limit_per_s, settings.write_rate_limit_burst)

    @staticmethod
    def _presented(headers: Mapping[str, str]) -> bytes | None:
        key = headers.get("X-API-Key")
        if key is None and (auth := headers.get("Authorization", "")).startswith("Bearer "):
            key = auth[len("Bearer ") :]
        return key.encode() if key is not None else None

    def check(self, scope: str, headers: Mapping[str, str]) -> None:
        """Raise `Refused` (401 no key, 403 a wrong one) unless the headers grant `scope`."""
        if scope == "public" and self.public_reads:
            return
        keys = [self.write_key] if scope == "write" else [self.read_key, self.write_key]
        accepted = [k for k in keys if k is not None]
        if not accepted:  # no key set for this scope: open (loopback only, see `require_keys`)
            return
        presented = self._presented(headers)
        if presented is None:
            raise Refused(
                401,
                "no_api_key",
                f"this needs the {'write' if scope == 'write' else 'read'} API key "
                "(X-API-Key or Authorization: Bearer)",
                {"WWW-Authenticate": "Bearer"},
            )
        if not any(hmac.compare_digest(presented, k) for k in accepted):
            raise Refused(403, "wrong_api_key", "this API key does not grant that")

    def grants(self, scope: str, headers: Mapping[str, str]) -> bool:
        try:
            self.check(scope, headers)
        except Refused:
            return False
        return True

    def admit_writes(self, client: str, n: int) -> None:
        """Raise `Refused` 429 with Retry-After when the client is over its write rate."""
        wait = self.limiter.take(client, n)
        if wait > 0:
            raise Refused(
                429,
                "rate_limited",
                f"over {self.limiter.rate:,.0f} events/s from {client}: retry later",
                {"Retry-After": str(max(1, round(wait + 0.5)))},
            )
