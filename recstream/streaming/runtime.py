"""Per-process resources the agents and views share: one Stores (Redis + MongoDB) per worker."""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator

from faust.streams import _current_event  # Faust keeps the event being processed in this ContextVar.
from faust.types import EventT

from recstream.kafka.batches import BatchProducer
from recstream.serving.foldin import ModelCache
from recstream.serving.state import ServingState
from recstream.serving.stores import Stores
from recstream.streaming.app import app

_stores: Stores | None = None
_models: ModelCache | None = None
_producer: BatchProducer | None = None
_serving: ServingState | None = None
_api = None
SERVING_IDLE_S = 30.0
"""A worker's serving state stops refreshing once its views have not used it for this long (they usually
run in the web role), and resumes at the next request (`ServingState.start`)."""
shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
"""Run at worker shutdown before the Redis, MongoDB and Kafka clients close."""


def stores() -> Stores:
    global _stores
    if _stores is None:
        _stores = Stores(app.recstream_settings)  # type: ignore[attr-defined]
    return _stores


def producer() -> BatchProducer:
    """The worker's batch producer (changelogs and internal topics in whole batches)."""
    global _producer
    if _producer is None:
        _producer = BatchProducer(app.recstream_settings)  # type: ignore[attr-defined]
    return _producer


def models() -> ModelCache:
    """The active ALS model of this process (polled in Redis, reloaded when a new one is activated)."""
    global _models
    if _models is None:
        settings = app.recstream_settings  # type: ignore[attr-defined]
        _models = ModelCache.from_url(settings.redis_url, check_interval_s=settings.model_check_interval_s)
    return _models


def serving() -> ServingState:
    """What this worker's views serve from, refreshed in the background (`recstream.serving.state`)."""
    global _serving
    if _serving is None:
        _serving = ServingState(app.recstream_settings, models())  # type: ignore[attr-defined]
    return _serving


def api():  # noqa: ANN201 - web.handlers.Api (imported here lazily: it imports this module's users)
    global _api
    if _api is None:
        from recstream.web.handlers import Api

        _api = Api(app.recstream_settings, stores, producer, serving, models)  # type: ignore[attr-defined]
    return _api


@app.task
async def _start_serving() -> None:
    serving().start(idle_after_s=SERVING_IDLE_S)


@app.task
async def _ensure_indexes() -> None:
    """The MongoDB indexes the dashboard's queries need, at every start (creating one that exists is a
    no-op); retried in the background while MongoDB is down, never holding the worker up."""
    from recstream.streaming.sinks import retry

    await retry("mongo", lambda: stores().ensure_indexes())


async def _stop_taking_requests(app) -> None:  # noqa: ANN001 - faust.App
    """Close the worker's HTTP listener and let the requests under way finish, while the clients they use
    are still open. Faust stops its web server last, after this hook has closed them: a request that
    came in meanwhile made new ones (`api()`, `serving()`), and waited forever for a serving state that
    nothing would load, holding shutdown up until the process was killed (30 s in the tests)."""
    runner = getattr(app.__dict__.get("web"), "_runner", None)  # only when the worker has a web server
    if runner is not None:
        await runner.cleanup()  # sites stopped, handlers under way waited for; Faust's own call is a no-op


@app.on_before_shutdown.connect
async def _close_stores(app, **kwargs) -> None:  # noqa: ANN001 - Faust signal signature
    global _stores, _models, _producer, _serving, _api
    try:
        await _stop_taking_requests(app)
    except Exception:
        logging.getLogger(__name__).exception("stopping the web server failed")
    for hook in shutdown_hooks:  # the agents make their state durable while the clients are still open
        try:
            await hook()
        except Exception:
            logging.getLogger(__name__).exception("shutdown hook %s failed", hook)
    if _api is not None:  # the views' queued impressions go out while the producer is still open
        try:
            await _api.close()
        except Exception:
            logging.getLogger(__name__).exception("closing the views failed")
        _api = None
    if _serving is not None:
        await _serving.close()
        _serving = None
    if _producer is not None:
        await _producer.close()
        _producer = None
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
