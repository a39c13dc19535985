"""Faust tables (RocksDB-backed, recovered from their changelog topics). Each is partitioned like the
topic that updates it: user history by user, engagement by video, neighbours by source video.

The agents read and write them through `recstream.streaming.tablecache.BatchTable` (each key once per flush, the
changelog in whole batches), so keys and values are raw bytes here: UTF-8 keys, orjson values. The
`-v2` names are the layouts of this version: a worker of an older layout's log rebuilds them by
replaying the log (`recstream rebuild`, docs/architecture.md).
"""

from __future__ import annotations

from recstream.streaming.app import app
from recstream.streaming.tablecache import BatchTable
from recstream.streamstate import decode_history

_s = app.recstream_settings  # type: ignore[attr-defined]


def _raw_table(name: str, partitions: int, help_: str):  # noqa: ANN202 - a faust Table
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=partitions, help=help_)


user_history = BatchTable(
    _raw_table(
        "user-history-v2",
        _s.interactions_partitions,
        "user -> {h: last N engagements [video, ts, weight] newest first, o: last applied offset}",
    ),
    _s.state_cache_keys,
    snapshot=dict,  # the history agent replaces `h` and `o`, never changes them in place
    decode=decode_history,
)

video_engagement = BatchTable(
    _raw_table(
        "video-engagement-v2",
        _s.interactions_partitions,
        "video -> lifetime counters, trend rank, 60 s windows and 15 min panes, applied offsets per origin",
    ),
    _s.state_cache_keys,
)

neighbours = BatchTable(
    _raw_table(
        "covisit-neighbours-v3",
        _s.covisit_partitions,
        "video -> forward-decayed neighbours {dst: weight}, base time, applied log positions per origin partition",
    ),
    _s.state_cache_keys,
)

user_shown = BatchTable(
    _raw_table(
        "user-shown-v1",
        _s.interactions_partitions,
        "user -> {s: {video: times shown}, the newest shown_per_user videos; o: last applied offset per partition}",
    ),
    _s.state_cache_keys,
)

catalog = app.Table(
    "catalog",
    key_type=str,
    default=dict,
    partitions=_s.interactions_partitions,
    help="video -> metadata",
)
