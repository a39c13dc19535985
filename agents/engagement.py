"""Per-video engagement (keyed by video): lifetime counters, a short tumbling and a long hopping
window, and the gravity-decayed trending score; materialised to Redis per batch."""

from __future__ import annotations

from collections import defaultdict

from recstream import metrics, scoring
from recstream.agents.common import parse_batch
from recstream.app import app
from recstream.channels import video_events
from recstream.records import Interaction
from recstream.runtime import as_event, stores
from recstream.stores import VIDEO_SERIES_STEP_S
from recstream.tables import video_stats, video_stats_long, video_stats_short

_s = app.recstream_settings  # type: ignore[attr-defined]
PARAMS = scoring.EngagementParams(_s.completion_ratio, _s.fast_skip_ms)
dirty_stats: set[str] = set()  # videos whose stats changed since the last MongoDB persist


@app.agent(video_events, name="engagement")
async def engagement_agent(stream) -> None:  # noqa: ANN001
    async for events in stream.take_events(_s.batch_size, within=_s.batch_within_s):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    by_video: dict[str, list] = defaultdict(list)
    for event, record in await parse_batch(events, Interaction):
        by_video[record.video_id].append((event, record))

    docs: dict[str, dict] = {}
    ranks: dict[str, float] = {}
    series: dict[str, dict[int, dict[str, float]]] = {}
    for video, items in by_video.items():
        doc = dict(video_stats[video])
        counts = dict(doc.get("counts", {}))
        score, updated = doc.get("trend", [0.0, 0])
        window_deltas: dict[float, dict[str, float]] = defaultdict(dict)
        for _event, record in items:
            delta = scoring.event_counts(record, PARAMS)
            counts = scoring.add_counts(counts, delta)
            score, updated = scoring.add_trend(score, updated, scoring.trending_weight(record, PARAMS),
                                               record.ts, _s.trending_half_life_s)
            # Windows follow event time (a replayed log lands in the windows it happened in); events
            # of one batch in the same second share one window update.
            second = record.ts // 1000
            window_deltas[second] = scoring.add_counts(window_deltas[second], delta)
            if record.duration_ms:
                doc["duration_ms"] = record.duration_ms
        doc.update(counts=counts, trend=[score, updated], last_event_ms=max(r.ts for _, r in items))
        with as_event(items[-1][0]):
            video_stats[video] = doc
            for second, delta in window_deltas.items():
                # Faust's `+=` on a windowed table applies the op to every window covering the
                # timestamp (one for tumbling, size/step for hopping); we pass event time explicitly.
                video_stats_short.table._apply_window_op(scoring.add_counts, video, delta, float(second))
                video_stats_long.table._apply_window_op(scoring.add_counts, video, delta, float(second))
        docs[video] = stats_document(video, doc)
        series[video] = series_buckets(window_deltas)
        if score > 0:
            ranks[video] = scoring.trend_rank(score, updated, _s.trending_half_life_s)
    metrics.messages_processed.labels(agent="engagement").inc(len(events))
    if docs:
        await stores().write_video_stats(docs, ranks, series)
        dirty_stats.update(docs)


def series_buckets(per_second: dict[float, dict[str, float]]) -> dict[int, dict[str, float]]:
    """This batch's counters of one video per VIDEO_SERIES_STEP_S bucket (the dashboard's timeline)."""
    out: dict[int, dict[str, float]] = {}
    for second, delta in per_second.items():
        start = int(second) // VIDEO_SERIES_STEP_S * VIDEO_SERIES_STEP_S
        out[start] = scoring.add_counts(out.get(start, {}), {k: v for k, v in delta.items() if k in scoring.COUNTERS})
    return out


def stats_document(video: str, doc: dict) -> dict:
    """The per-video figures serving shows: lifetime, plus the latest short and long windows."""
    out = {"video_id": video, **scoring.stats_view(doc.get("counts", {})),
           "duration_ms": doc.get("duration_ms"), "last_event_ms": doc.get("last_event_ms"),
           "trend": doc.get("trend")}
    at = (doc.get("last_event_ms") or 0) / 1000
    for name, wrapper in (("short", video_stats_short), ("long", video_stats_long)):
        window = wrapper.table.window
        rng = window.earliest(at)  # the widest window that still covers the latest event
        counts = wrapper.table._get_key((video, rng)) or {}
        start_ms = round(rng[0] * 1000)
        out[f"window_{name}"] = {"start_ms": start_ms, "end_ms": start_ms + round(window.size * 1000),
                                 **scoring.stats_view(counts)}
    return out
