"""The app's Faust topic objects (names in recstream.kafka.topics). Values travel as raw JSON bytes so that
one pydantic schema validates them, and a bad message can be sent to the dead letters untouched.

`internal=True` makes the worker create missing topics with these partition counts at startup, the
same specs `recstream.kafka.admin.ensure_topics` gives producers that start first."""

from __future__ import annotations

from recstream.kafka.topics import topic_names
from recstream.streaming.app import app

_settings = app.recstream_settings  # type: ignore[attr-defined]
names = topic_names(_settings)

interactions = app.topic(
    names.interactions,
    key_type=str,
    value_type=bytes,
    value_serializer="raw",
    partitions=_settings.interactions_partitions,
    internal=True,
)
# The internal topics carry packed lists of entries (recstream.agents.common.pack), one message per
# partition per batch, written by the history agent's batch producer to an explicit partition.
video_events_partitions = _settings.interactions_partitions
covisit_partitions = _settings.covisit_partitions
video_events = app.topic(
    names.video_events,
    key_type=str,
    value_type=bytes,
    value_serializer="raw",
    partitions=_settings.interactions_partitions,
    internal=True,
)
covisit = app.topic(
    names.covisit,
    key_type=str,
    value_type=bytes,
    value_serializer="raw",
    partitions=_settings.covisit_partitions,
    internal=True,
)
videos = app.topic(
    names.videos,
    key_type=str,
    value_type=bytes,
    value_serializer="raw",
    partitions=_settings.interactions_partitions,
    compacting=True,
    internal=True,
)
dead_letters = app.topic(
    names.dead_letters, key_type=str, value_type=bytes, value_serializer="raw", partitions=1, internal=True
)
impressions = app.topic(
    names.impressions,
    key_type=str,
    value_type=bytes,
    value_serializer="raw",
    partitions=_settings.interactions_partitions,
    internal=True,
)
