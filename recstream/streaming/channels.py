"""The app's Faust topic objects (names in recstream.kafka.topics). Values travel as the raw bytes Kafka
holds (JSON on the public topics, MessagePack on the internal ones), so that one schema validates them
and a bad message can be sent to the dead letters untouched.

`internal=True` makes the worker create missing topics with these partition counts at startup, the
same specs `recstream.kafka.admin.ensure_topics` gives producers that start first."""

from __future__ import annotations

from typing import Any

from faust import Schema
from faust.types import AppT, Message

from recstream.kafka.topics import topic_names
from recstream.streaming.app import app

_settings = app.recstream_settings  # type: ignore[attr-defined]
names = topic_names(_settings)


class RawSchema(Schema):
    """Keys as text, values as the bytes Kafka gave: what Faust's codec registry gives for `key_type=str`
    and the raw value serializer, without its codec lookups per message (~5 µs each, 2 % of the worker's
    CPU per interaction). Anything else (a key that is not UTF-8, no value) takes Faust's own path, and
    its errors."""

    def compile(self, app: AppT, **kwargs: Any) -> Any:
        faust_decode = super().compile(app, **kwargs)
        create_event = app.create_event

        async def decode(
            message: Message, *, propagate: bool = kwargs.get("default_propagate", False)
        ) -> Any:
            key, value = message.key, message.value
            if type(value) is bytes and (key is None or type(key) is bytes):
                try:
                    text = None if key is None else key.decode()
                except UnicodeDecodeError:
                    return await faust_decode(message, propagate=propagate)
                return create_event(text, value, message.headers, message)
            return await faust_decode(message, propagate=propagate)

        return decode


def _topic(name: str, partitions: int, **options: Any) -> Any:
    return app.topic(
        name,
        schema=RawSchema(),
        key_type=str,
        value_type=bytes,
        value_serializer="raw",
        partitions=partitions,
        internal=True,
        **options,
    )


interactions = _topic(names.interactions, _settings.interactions_partitions)
# The internal topics carry packed lists of entries (recstream.agents.common.pack), one message per
# partition per batch, written by the history agent's batch producer to an explicit partition.
video_events_partitions = _settings.interactions_partitions
covisit_partitions = _settings.covisit_partitions
video_events = _topic(names.video_events, _settings.interactions_partitions)
covisit = _topic(names.covisit, _settings.covisit_partitions)
videos = _topic(names.videos, _settings.interactions_partitions, compacting=True)
dead_letters = _topic(names.dead_letters, 1)
impressions = _topic(names.impressions, _settings.interactions_partitions)
