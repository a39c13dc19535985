"""What every agent does with its input: parse it with the wire contract, or dead-letter it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

import orjson
from faust.types import EventT
from pydantic import BaseModel, ValidationError

from recstream import channels, metrics
from recstream.records import DeadLetter, encode

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def _text(raw: object) -> str:
    if isinstance(raw, bytes | bytearray):
        return raw.decode("utf-8", errors="replace")
    return "" if raw is None else str(raw)


async def parse_batch(events: Sequence[EventT], model: type[M]) -> list[tuple[EventT, M]]:
    """Validate each message; anything unusable goes to the dead-letter topic with the reason."""
    good: list[tuple[EventT, M]] = []
    for event in events:
        try:
            good.append((event, model.model_validate_json(event.value)))
        except (ValidationError, ValueError, TypeError) as exc:
            await dead_letter(event, _reason(exc))
    return good


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
    return f"{type(exc).__name__}: {exc}"


async def dead_letter(event: EventT, reason: str) -> None:
    msg = event.message
    letter = DeadLetter(source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                        key=_text(event.key) or None, value=_text(event.value)[:10_000], reason=reason)
    await channels.dead_letters.send(key=msg.topic, value=encode(letter))
    metrics.dead_letters.labels(topic=msg.topic).inc()
    log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)


PACK_MAX_ENTRIES = 2000
"""Entries per internal-topic message: many per message (one Kafka write per partition per batch), few
enough that a message stays far below Kafka's 1 MB default."""


def pack(entries: list[list]) -> list[tuple[None, bytes]]:
    """Entries for one internal-topic partition as (key, value) records of at most PACK_MAX_ENTRIES."""
    return [(None, orjson.dumps(entries[i:i + PACK_MAX_ENTRIES]))
            for i in range(0, len(entries), PACK_MAX_ENTRIES)]


def unpack(value: bytes) -> list[list]:
    return orjson.loads(value)
