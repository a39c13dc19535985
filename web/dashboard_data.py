"""The dashboard's figures: what the views in web/dashboard.py answer, computed from what they read.

Every function here is pure: the views read Redis, MongoDB and the metrics, then pass the values in.
Nothing imports Faust or opens a connection, so each figure is unit-tested on plain dicts
(tests/unit/test_dashboard_data.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from recstream.records import EVENT_TYPES

SETTLE_S = 1.0  # a second is shown once it ended this long ago: its events have been processed
RATES = (("completion_rate", "completions"), ("like_rate", "like"), ("share_rate", "share"))
CLOSED_LOOP_FIELDS = (
    "strategy",
    "users",
    "impressions",
    "watch_time_ms",
    "completion_rate",
    "like_rate",
    "taste",
    "click_through",
    "repeat_exposure",
)


def _ratio(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


# --- live overview --------------------------------------------------------------------------
def overview_span(minutes: int, step: int, now: float) -> tuple[int, int]:
    """The overview's epoch seconds [start, end): whole steps, ending before the unsettled second."""
    end = (int(now - SETTLE_S) // step) * step
    return end - max(1, minutes * 60 // step) * step, end


def overview(
    per_second: Mapping[int, Mapping[str, float]],
    per_minute: Mapping[int, int],
    active_users: int,
    start: int,
    end: int,
    step: int,
) -> dict[str, Any]:
    """Per-bucket series and window totals from the per-second counters the history agent writes
    (`per_second`), the per-minute active users and the distinct users of the whole span."""
    n = (end - start) // step

    def total(field: str, lo: int, hi: int) -> float:
        return sum(per_second.get(s, {}).get(field, 0.0) for s in range(lo, hi))

    t = [start + i * step for i in range(n)]
    series: dict[str, Any] = {"t": t, "events_per_s": {}, "views": []}
    for kind in EVENT_TYPES:
        series["events_per_s"][kind] = [round(total(kind, b, b + step) / step, 3) for b in t]
    series["views"] = [total("view", b, b + step) for b in t]
    series["avg_watch_time_ms"] = [
        _ratio(total("watch_time_ms", b, b + step), v, 1) for b, v in zip(t, series["views"], strict=True)
    ]
    for name, field in RATES:
        series[name] = [_ratio(total(field, b, b + step), v) for b, v in zip(t, series["views"], strict=True)]

    by_type = {kind: int(total(kind, start, end)) for kind in EVENT_TYPES}
    views, events = by_type["view"], sum(by_type.values())
    totals: dict[str, Any] = {
        "events": events,
        "by_type": by_type,
        "events_per_s": round(events / (n * step), 3),
        "views": views,
        "active_users": active_users,
        "avg_watch_time_ms": _ratio(total("watch_time_ms", start, end), views, 1),
    }
    for name, field in RATES:
        totals[name] = _ratio(total(field, start, end), views)
    recent = sum(total(kind, end - 10, end) for kind in EVENT_TYPES)
    return {
        "since_s": start,
        "until_s": end,
        "step_s": step,
        "series": series,
        "totals": totals,
        "current": {"events_per_s": round(recent / 10, 3), "window_s": 10},
        "active_users": {
            "minutes": [m * 60 for m in sorted(per_minute)],
            "users": [per_minute[m] for m in sorted(per_minute)],
        },
    }


# --- trending and per-video analytics -------------------------------------------------------
def trend_direction(stats: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """Rising or falling: views per minute since the latest short window began, against the same
    since the latest long window began (both windows are the newest that saw an event)."""

    def per_minute(window: Mapping[str, Any] | None, floor_s: float) -> float:
        if not window:
            return 0.0
        return window.get("views", 0) / max(floor_s, (now_ms - window["start_ms"]) / 1000) * 60

    recent = per_minute(stats.get("window_short"), 10.0)
    longer = per_minute(stats.get("window_long"), 60.0)
    if longer == 0:
        direction = "new" if recent > 0 else "flat"
    else:
        direction = "up" if recent >= 1.25 * longer else "down" if recent <= 0.8 * longer else "flat"
    return {
        "direction": direction,
        "recent_views_per_min": round(recent, 2),
        "views_per_min": round(longer, 2),
    }


def meta_fields(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = meta or {}
    return {
        k: meta.get(k, d)
        for k, d in (
            ("caption", ""),
            ("creator_id", None),
            ("hashtags", []),
            ("category", None),
            ("duration_ms", None),
            ("created_at", None),
        )
    }


def trending_item(
    rank: int, video: str, score: float, stats: Mapping[str, Any], meta: Mapping[str, Any] | None, now_ms: int
) -> dict[str, Any]:
    """One row of /api/trending: the video's counters, its metadata and its trend."""
    return {
        "rank": rank,
        "video_id": video,
        "score": round(score, 4),
        "views": stats.get("views", 0),
        "watch_time_ms": stats.get("watch_time_ms", 0),
        "avg_watch_time_ms": stats.get("avg_watch_time_ms", 0.0),
        "completion_rate": stats.get("completion_rate", 0.0),
        "likes": stats.get("likes", 0),
        "shares": stats.get("shares", 0),
        **meta_fields(meta),
        "trend": trend_direction(stats, now_ms),
    }


def watch_distribution(stats: Mapping[str, Any], completion_ratio: float) -> dict[str, Any]:
    """Views by watch ratio: the agent's histogram when it keeps one, else completed vs not (a view
    completes at `completion_ratio` of the video, the settings' own)."""
    hist = stats.get("watch_ratio_hist")
    if hist:
        labels = [f"{10 * i}-{10 * (i + 1)}%" for i in range(len(hist) - 1)] + [f"{10 * (len(hist) - 1)}%+"]
        return {"source": "histogram", "labels": labels, "views": hist}
    views, done = stats.get("views", 0), stats.get("completions", 0)
    ratio = int(round(completion_ratio * 100))
    return {"source": "completions", "labels": [f"< {ratio}%", f">= {ratio}%"], "views": [views - done, done]}


def engagement_rates(counts: Mapping[str, Any]) -> dict[str, Any]:
    views = counts.get("views", 0)
    return {
        "views": views,
        "completion_rate": counts.get("completion_rate", 0.0),
        "avg_watch_time_ms": counts.get("avg_watch_time_ms", 0.0),
        **{f"{k}_rate": _ratio(counts.get(f"{k}s", 0), views) for k in ("like", "share", "comment", "skip")},
    }


def engagement_windows(stats: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    """A video's rates over its lifetime, then over the long and short windows it has (epoch seconds
    `now` tells whether a window is still open)."""
    windows = [{"name": "lifetime", **engagement_rates(stats)}]
    for key, name in (("window_long", "long"), ("window_short", "short")):
        if key in stats:
            w = stats[key]
            windows.append(
                {
                    "name": name,
                    "start_ms": w["start_ms"],
                    "end_ms": w["end_ms"],
                    "current": w["end_ms"] > now * 1000,
                    **engagement_rates(w),
                }
            )
    return windows


def timeline(
    buckets: Mapping[int, Mapping[str, float]], since_s: int, until_s: int, step: int
) -> dict[str, Any]:
    t = list(range(since_s // step * step, until_s + 1, step))
    out: dict[str, Any] = {"step_s": step, "t": t}
    for field in ("views", "likes", "shares", "comments", "skips"):
        out[field] = [int(buckets.get(b, {}).get(field, 0)) for b in t]
    out["completion_rate"] = [
        _ratio(buckets.get(b, {}).get("completions", 0), v) for b, v in zip(t, out["views"], strict=True)
    ]
    out["engagement_rate"] = [
        _ratio(sum(buckets.get(b, {}).get(f, 0) for f in ("likes", "shares", "comments")), v)
        for b, v in zip(t, out["views"], strict=True)
    ]
    return out


# --- model registry -------------------------------------------------------------------------
def version_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A model registry document as the Model tab shows it."""
    timings = doc.get("timings") or {}
    return {
        "version": doc.get("_id"),
        "status": doc.get("status"),
        "created_at": doc.get("created_at"),
        "activated_at": doc.get("activated_at"),
        "metrics": doc.get("metrics") or {},
        "baseline": (doc.get("baseline") or {}).get("popularity") or {},
        "data": doc.get("data") or {},
        "params": doc.get("params") or {},
        "gate": doc.get("gate"),
        "timings": timings,
        "blend": doc.get("blend") or {},
        "served": doc.get("served") or {},
        "tuning": {k: v for k, v in (doc.get("tuning") or {}).items() if k != "blend_trials"},
        "training_s": round(sum(v for v in timings.values() if isinstance(v, int | float)), 2),
    }


def closed_loop_run(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest closed-loop run among documents newest first: one row per strategy."""
    if not docs:
        return None
    run = [d for d in docs if d.get("run_id") == docs[0].get("run_id")]
    return {
        "run_id": docs[0].get("run_id"),
        "created_at": docs[0].get("created_at"),
        "config": docs[0].get("config"),
        "strategies": [{k: d.get(k) for k in CLOSED_LOOP_FIELDS} for d in run],
    }


# --- pipeline health ------------------------------------------------------------------------
class FreshnessWindow:
    """p50/p99 of the freshness histogram over the last `window_s`, from snapshots of its buckets."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.snapshots: deque[tuple[float, list[tuple[float, float]]]] = deque()

    @staticmethod
    def buckets(histogram: Any) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) summed over the histogram's label sets."""
        out: dict[float, float] = {}
        for family in histogram.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    out[le] = out.get(le, 0.0) + sample.value
        return sorted(out.items())

    def read(self, histogram: Any, now: float) -> dict[str, Any]:
        current = self.buckets(histogram)
        self.snapshots.append((now, current))
        while len(self.snapshots) > 1 and self.snapshots[1][0] <= now - self.window_s:
            self.snapshots.popleft()
        base = dict(self.snapshots[0][1]) if self.snapshots[0][0] < now else {}
        delta = [(le, count - base.get(le, 0.0)) for le, count in current]
        total = delta[-1][1] if delta else 0
        return {
            "window_s": round(now - self.snapshots[0][0]) if base else None,
            "count": int(total),
            "p50_ms": quantile_ms(delta, 0.5),
            "p99_ms": quantile_ms(delta, 0.99),
        }


def quantile_ms(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket that holds rank q * count."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank, prev_le, prev_count = q * cumulative[-1][1], 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return round(prev_le * 1000, 1)
            width = count - prev_count
            return round((prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1)) * 1000, 1)
        prev_le, prev_count = le, count
    return None
