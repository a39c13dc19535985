"""Faust tables (RocksDB-backed, recovered from their changelog topics). Each is partitioned like the
topic that updates it: user history by user, engagement by video, neighbours by source video."""

from __future__ import annotations

from datetime import timedelta

from recstream.app import app

_s = app.recstream_settings  # type: ignore[attr-defined]

user_history = app.Table(
    "user-history", key_type=str, default=list,
    partitions=_s.interactions_partitions, help="user -> last N engagements [video, ts, weight]",
)

video_stats = app.Table(
    "video-stats", key_type=str, default=dict,
    partitions=_s.interactions_partitions, help="video -> lifetime engagement counters and trend score",
)

video_stats_short = app.Table(
    "video-stats-short", key_type=str, default=dict,
    partitions=_s.interactions_partitions, help="video -> counters per short tumbling window",
).tumbling(_s.short_window_s, expires=timedelta(seconds=_s.short_window_s * 5))

video_stats_long = app.Table(
    "video-stats-long", key_type=str, default=dict,
    partitions=_s.interactions_partitions, help="video -> counters per long hopping window",
).hopping(_s.long_window_s, _s.long_window_step_s, expires=timedelta(seconds=_s.long_window_s * 2))

neighbours = app.Table(
    "covisit-neighbours", key_type=str, default=dict,
    partitions=_s.covisit_partitions, help="video -> top-K directional neighbours {dst: [weight, t]}",
)

catalog = app.Table(
    "catalog", key_type=str, default=dict,
    partitions=_s.interactions_partitions, help="video -> metadata",
)
