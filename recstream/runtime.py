"""Per-process resources the agents and views share: one Stores (Redis + MongoDB) per worker."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

from faust.streams import _current_event  # Faust keeps the event being processed in this ContextVar.
from faust.types import EventT

from recstream.app import app
from recstream.foldin import ModelCache
from recstream.stores import Stores

_stores: Stores | None = None
_models: ModelCache | None = None


def stores() -> Stores:
    global _stores
    if _stores is None:
        _stores = Stores(app.recstream_settings)  # type: ignore[attr-defined]
    return _stores


def models() -> ModelCache:
    """The active ALS model of this process (polled in Redis, reloaded when a new one is activated)."""
    global _models
    if _models is None:
        settings = app.recstream_settings  # type: ignore[attr-defined]
        _models = ModelCache.from_url(settings.redis_url, check_interval_s=settings.model_check_interval_s)
    return _models


@app.on_before_shutdown.connect
async def _close_stores(app, **kwargs) -> None:  # noqa: ANN001 - Faust signal signature
    global _stores, _models
    if _stores is not None:
        await _stores.close()
        _stores = None
    if _models is not None:
        await _models.close()
        _models = None


@contextlib.contextmanager
def as_event(event: EventT) -> Iterator[None]:
    """Make `event` the current one while writing tables for its key.

    A table write goes to the changelog partition of the *current* event. In a batch from
    `take_events` the current event is the batch's last one, which may come from another partition
    than the key being written; recovery would then restore the key into the wrong partition. Our
    source topics are keyed like the tables they update, so the event that carried a key is the right
    one to stand as current while that key is written.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)

