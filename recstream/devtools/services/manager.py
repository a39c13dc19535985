"""`recstream services up|down|status`: start, stop and report the local services."""

from __future__ import annotations

from collections.abc import Callable

from recstream.devtools.services.definitions import kafka_service, mongo_service, redis_service
from recstream.devtools.services.process import LocalService, ServiceError
from recstream.settings import Settings, redact_url

__all__ = ["ServiceError", "down", "local_services", "status", "up"]

_NAMES = ("kafka", "redis", "mongo")


def local_services(settings: Settings) -> dict[str, LocalService | None]:
    """Each service by name; None where the settings point at an external one."""
    return {
        "kafka": kafka_service(settings),
        "redis": redis_service(settings),
        "mongo": mongo_service(settings),
    }


def _external_address(settings: Settings, name: str) -> str:
    url = {"kafka": settings.kafka_bootstrap, "redis": settings.redis_url, "mongo": settings.mongo_url}[name]
    return redact_url(url)  # a password in a URL is never printed


def up(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Start every managed service that is not running and wait until all answer."""
    for name, service in local_services(settings).items():
        if service is None:
            echo(f"{name}: external ({_external_address(settings, name)}), left alone")
            continue
        echo(service.start())


def down(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Stop the services we started (newest dependency last: Kafka before its clients is fine)."""
    for name, service in reversed(list(local_services(settings).items())):
        if service is None:
            echo(f"{name}: external, left alone")
            continue
        echo(service.stop())


def status(settings: Settings) -> list[dict[str, object]]:
    """One row per service: name, pid, address, health."""
    rows: list[dict[str, object]] = []
    for name, service in local_services(settings).items():
        if service is None:
            rows.append(
                {
                    "service": name,
                    "pid": None,
                    "address": _external_address(settings, name),
                    "managed": False,
                    "healthy": None,
                    "detail": "external",
                }
            )
            continue
        pid = service.pid()
        ok, detail = service.healthy()
        rows.append(
            {
                "service": name,
                "pid": pid,
                "address": service.address,
                "managed": True,
                "healthy": ok,
                "detail": detail if pid else f"not running ({detail})",
            }
        )
    return rows
