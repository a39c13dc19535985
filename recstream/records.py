"""The wire contract: one schema per message, used by HTTP validation and by the Kafka agents alike.

Messages travel as JSON. The same pydantic models validate a `POST /events` body and every message an
agent reads from Kafka, so the two can never drift apart.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

EventType = Literal["view", "like", "share", "comment", "skip", "follow"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

ID_PATTERN = r"^[A-Za-z0-9_\-:@+=~]+$"
"""Letters, digits and `_-:@+=~`: an id is safe in a URL path, a Redis key and a MongoDB field or
value (no `$`, no `.`: nothing MongoDB could read as an operator or a path)."""
ID_MAX_LENGTH = 128
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
MAX_DURATION_MS = 24 * 3600 * 1000
MAX_TS = 2**53
"""The latest time (epoch ms) a record may carry: integers up to 2^53 survive a JSON parser that reads
numbers as doubles (JavaScript's)."""
FUTURE_SKEW_CONTEXT = "max_ts"
"""Validation context key: the latest timestamp (epoch ms) a request may carry. HTTP validation passes
it (now + `max_future_skew_s`); agents validate without it and clamp instead (`bound_ts`), so that a
replay of the log gives the same state whenever it runs."""


R = TypeVar("R", "Interaction", "Video")


def now_ms() -> int:
    return int(time.time() * 1000)


def _to_epoch_ms(value: Any) -> Any:
    """Epoch milliseconds (int/float, or a numeric string) or ISO 8601 -> epoch ms; None passes through."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("must be epoch milliseconds or an ISO 8601 timestamp") from exc
        if parsed.tzinfo is None:
            raise ValueError("an ISO 8601 timestamp needs a timezone (e.g. Z or +00:00)")
        return int(parsed.timestamp() * 1000)
    return value


def _not_ahead(value: int, info: ValidationInfo) -> int:
    """Refuse a time further ahead than the context allows: one event dated days ahead would otherwise
    lead trending (forward-decayed scores grow as 2^(t / half-life)) until it is deleted by hand."""
    limit = (info.context or {}).get(FUTURE_SKEW_CONTEXT)
    if limit is not None and value > limit:
        ahead_s = (value - now_ms()) / 1000
        raise ValueError(
            f"is {ahead_s:.0f} s ahead of the server's clock; at most {(limit - now_ms()) / 1000:.0f} s "
            "ahead is accepted"
        )
    return value


def bound_ts(record: R, append_ms: int, skew_ms: int) -> R:
    """The record with its time (`ts`, `created_at`) no later than `skew_ms` after its log append time
    (the message's CreateTime): what agents apply, the same on every replay of the log."""
    field = "ts" if isinstance(record, Interaction) else "created_at"
    limit = append_ms + skew_ms
    return record if getattr(record, field) <= limit else record.model_copy(update={field: limit})


class Interaction(BaseModel):
    """One user action on one video. `view` carries how long the video was watched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: EventType
    user_id: Id
    video_id: Id
    ts: int = Field(
        default=0,
        ge=0,
        le=MAX_TS,
        description="epoch ms (or ISO 8601); server time when absent; "
        "at most `max_future_skew_s` ahead of the server's clock",
    )
    watch_time_ms: int | None = Field(default=None, ge=0, le=MAX_DURATION_MS, validate_default=True)
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_DURATION_MS)

    @field_validator("watch_time_ms", mode="after")
    @classmethod
    def _view_needs_watch_time(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("type") == "view":
            raise ValueError("required for a view")
        return value

    _normalise_ts = field_validator("ts", mode="before")(lambda v: now_ms() if v is None else _to_epoch_ms(v))
    _bounded_ts = field_validator("ts", mode="after")(lambda v, info: _not_ahead(v, info))

    @model_validator(mode="after")
    def _default_ts(self) -> Interaction:
        if self.ts == 0:
            object.__setattr__(self, "ts", now_ms())
        return self


class Video(BaseModel):
    """Video metadata, published to the compacted videos topic keyed by `video_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    video_id: Id
    creator_id: Id
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_DURATION_MS)
    category: str | None = Field(default=None, max_length=64)
    hashtags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    caption: str = Field(default="", max_length=2000)
    created_at: int = Field(
        default=0,
        ge=0,
        le=MAX_TS,
        description="epoch ms (or ISO 8601); server time when "
        "absent; at most `max_future_skew_s` ahead of the server's clock",
    )

    _normalise_created = field_validator("created_at", mode="before")(
        lambda v: now_ms() if v is None else _to_epoch_ms(v)
    )
    _bounded_created = field_validator("created_at", mode="after")(lambda v, info: _not_ahead(v, info))

    @model_validator(mode="after")
    def _default_created(self) -> Video:
        if self.created_at == 0:
            object.__setattr__(self, "created_at", now_ms())
        return self


class UserErasure(BaseModel):
    """`DELETE /users/{id}` on the interactions topic, keyed like the user's events: it follows them in
    their partition, so every worker, and every replay of the log, erases after exactly those events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    erase_user: Id
    ts: int = Field(default_factory=now_ms)


MAX_SHOWN = 500


class Shown(BaseModel):
    """What serving showed one user in one answer (the impressions topic, keyed by user): the videos
    in the order shown (their positions), the strategy and the model version that chose them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Id
    videos: list[Id] = Field(max_length=MAX_SHOWN)
    strategy: str = Field(max_length=32)
    model_version: str | None = Field(default=None, max_length=128)
    ts: int = Field(default_factory=now_ms)


class DeadLetter(BaseModel):
    """An input message that could not be used, kept with the reason so nothing is silently dropped."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str
    reason: str
    ts: int = Field(default_factory=now_ms)


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json(exclude_none=True).encode()


def describe_errors(error: ValidationError, index: int | None = None) -> list[dict[str, Any]]:
    """Pydantic errors as `{"index", "field", "message"}`: what a client needs to fix its request."""
    out = []
    for e in error.errors(include_url=False):
        field = ".".join(str(p) for p in e["loc"]) or None
        out.append({"index": index, "field": field, "message": e["msg"]})
    return out
