"""The dashboard's figures (web/dashboard_data.py) and its reading of dead letters, on plain values:
no services, no Faust app."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Histogram

from recstream.settings import Settings
from recstream.web.dashboard_data import (
    FreshnessWindow,
    closed_loop_run,
    engagement_rates,
    engagement_windows,
    overview,
    overview_span,
    quantile_ms,
    timeline,
    trend_direction,
    trending_item,
    version_summary,
    watch_distribution,
)
from recstream.web.dashboard_dead_letters import DeadLetters, summarise


def test_the_figures_and_the_dead_letter_reader_import_without_faust() -> None:
    code = (
        "import json, sys, recstream.web.dashboard_data, recstream.web.dashboard_dead_letters\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'faust')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


# --- live overview ------------------------------------------------------------------------------
def test_the_span_ends_on_a_whole_step_before_the_unsettled_second() -> None:
    assert overview_span(5, 2, now=1000.5) == (698, 998)  # 999.5 settled -> the step [998, 1000) is not
    assert overview_span(5, 2, now=1001.0) == (700, 1000)
    assert overview_span(1, 60, now=1000.5) == (900, 960)  # never fewer than one step
    assert overview_span(0, 1, now=1000.5) == (998, 999)


def test_overview_totals_rates_and_series() -> None:
    start, end = overview_span(5, 2, now=1000.5)
    # The burst of the dashboard's integration test: 20 views (9 completed, 133.5 s watched), 4 likes,
    # 2 shares and a comment, over two seconds of one 2 s bucket; and one view not settled yet.
    per_second = {
        990: {"view": 12.0, "completions": 5.0, "watch_time_ms": 80_000.0, "like": 4.0},
        991: {"view": 8.0, "completions": 4.0, "watch_time_ms": 53_500.0, "share": 2.0, "comment": 1.0},
        999: {"view": 1.0, "watch_time_ms": 1_000.0},
    }
    body = overview(per_second, {16: 10, 17: 0}, 10, start, end, 2)

    assert (body["since_s"], body["until_s"], body["step_s"]) == (698, 998, 2)
    totals = body["totals"]
    assert totals["by_type"] == {"view": 20, "like": 4, "share": 2, "comment": 1, "skip": 0, "follow": 0}
    assert totals["events"] == 27 and totals["views"] == 20 and totals["active_users"] == 10
    assert totals["events_per_s"] == 0.09  # 27 events over 300 s
    assert totals["avg_watch_time_ms"] == 6675.0
    assert (totals["completion_rate"], totals["like_rate"], totals["share_rate"]) == (0.45, 0.2, 0.1)
    assert body["current"] == {"events_per_s": 2.7, "window_s": 10}

    series = body["series"]
    assert len(series["t"]) == 150 and series["t"][:2] == [698, 700] and series["t"][-1] == 996
    burst = series["t"].index(990)
    assert series["views"][burst] == 20 and sum(series["views"]) == 20
    assert series["events_per_s"]["like"][burst] == 2.0 and series["events_per_s"]["comment"][burst] == 0.5
    assert series["avg_watch_time_ms"][burst] == 6675.0 and series["completion_rate"][burst] == 0.45
    others = [i for i in range(150) if i != burst]
    assert all(series["views"][i] == 0 and series["completion_rate"][i] is None for i in others)
    assert body["active_users"] == {"minutes": [960, 1020], "users": [10, 0]}


def test_an_empty_window_has_no_rates() -> None:
    body = overview({}, {}, 0, 698, 998, 2)
    assert body["totals"]["events"] == 0 and body["totals"]["events_per_s"] == 0.0
    assert body["totals"]["completion_rate"] is None and body["totals"]["avg_watch_time_ms"] is None
    assert body["active_users"] == {"minutes": [], "users": []}


# --- trending and per-video analytics -----------------------------------------------------------
def test_quantiles() -> None:
    buckets = [(0.01, 10.0), (0.05, 60.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert quantile_ms(buckets, 0.5) == pytest.approx(42.0)
    assert quantile_ms(buckets, 0.99) == pytest.approx(98.75, abs=0.05)  # 50 + 50 * (99 - 60) / 40 ms
    assert quantile_ms([(0.1, 5.0), (float("inf"), 10.0)], 0.9) == 100.0  # in +Inf: its lower bound
    assert quantile_ms([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert quantile_ms([], 0.5) is None


def test_trend_direction() -> None:
    now = 10_000_000
    rising = {
        "window_short": {"start_ms": now - 30_000, "views": 30},
        "window_long": {"start_ms": now - 3_000_000, "views": 40},
    }
    assert trend_direction(rising, now) == {
        "direction": "up",
        "recent_views_per_min": 60.0,
        "views_per_min": 0.8,
    }
    falling = {
        "window_short": {"start_ms": now - 600_000, "views": 1},
        "window_long": {"start_ms": now - 900_000, "views": 90},
    }
    assert trend_direction(falling, now)["direction"] == "down"
    steady = {
        "window_short": {"start_ms": now - 60_000, "views": 6},
        "window_long": {"start_ms": now - 600_000, "views": 60},
    }
    assert trend_direction(steady, now)["direction"] == "flat"
    # A short window younger than 10 s counts as 10 s: three views in 1 s are 18 a minute, not 180.
    young = {"window_short": {"start_ms": now - 1_000, "views": 3}}
    assert trend_direction(young, now) == {
        "direction": "new",
        "recent_views_per_min": 18.0,
        "views_per_min": 0.0,
    }
    assert trend_direction({}, now)["direction"] == "flat"


def test_trending_item_defaults_a_video_without_counters_or_metadata() -> None:
    item = trending_item(3, "v", 1.234567, {}, None, 0)
    assert item == {
        "rank": 3,
        "video_id": "v",
        "score": 1.2346,
        "views": 0,
        "watch_time_ms": 0,
        "avg_watch_time_ms": 0.0,
        "completion_rate": 0.0,
        "likes": 0,
        "shares": 0,
        "caption": "",
        "creator_id": None,
        "hashtags": [],
        "category": None,
        "duration_ms": None,
        "created_at": None,
        "trend": {"direction": "flat", "recent_views_per_min": 0.0, "views_per_min": 0.0},
    }
    assert trending_item(1, "v", 1.0, {}, {"caption": "Cats", "hashtags": ["c"]}, 0)["caption"] == "Cats"


def test_watch_distribution() -> None:
    hist = [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 1]
    assert watch_distribution({"watch_ratio_hist": hist, "views": 10}, 0.9) == {
        "source": "histogram",
        "labels": [f"{10 * i}-{10 * (i + 1)}%" for i in range(10)] + ["100%+"],
        "views": hist,
    }
    # Without a histogram: completed views against the others, at the settings' completion ratio.
    assert watch_distribution({"views": 10, "completions": 3}, 0.9) == {
        "source": "completions",
        "labels": ["< 90%", ">= 90%"],
        "views": [7, 3],
    }
    assert watch_distribution({}, 0.75)["labels"] == ["< 75%", ">= 75%"]


def test_engagement_rates_and_windows() -> None:
    counts = {"views": 10, "completion_rate": 0.3, "avg_watch_time_ms": 7750.0, "likes": 4, "skips": 1}
    assert engagement_rates(counts) == {
        "views": 10,
        "completion_rate": 0.3,
        "avg_watch_time_ms": 7750.0,
        "like_rate": 0.4,
        "share_rate": 0.0,
        "comment_rate": 0.0,
        "skip_rate": 0.1,
    }
    assert engagement_rates({})["like_rate"] is None  # no views: no rate, not 0

    now = 1_000.0
    stats = {
        **counts,
        "window_long": {"start_ms": 0, "end_ms": 600_000, "views": 4, "likes": 1},
        "window_short": {"start_ms": 990_000, "end_ms": 1_020_000, "views": 2},
    }
    windows = engagement_windows(stats, now)
    assert [(w["name"], w.get("current")) for w in windows] == [
        ("lifetime", None),
        ("long", False),
        ("short", True),
    ]
    assert windows[1]["like_rate"] == 0.25 and windows[2]["start_ms"] == 990_000
    assert [w["name"] for w in engagement_windows(counts, now)] == ["lifetime"]


def test_timeline() -> None:
    buckets = {100: {"views": 4.0, "completions": 1.0, "likes": 1.0, "shares": 1.0}, 120: {"skips": 2.0}}
    out = timeline(buckets, since_s=95, until_s=125, step=10)
    assert out["step_s"] == 10 and out["t"] == [90, 100, 110, 120]  # from the step holding since_s
    assert out["views"] == [0, 4, 0, 0] and out["skips"] == [0, 0, 0, 2]
    assert out["completion_rate"] == [None, 0.25, None, None]
    assert out["engagement_rate"] == [None, 0.5, None, None]


# --- model registry -----------------------------------------------------------------------------
def test_version_summary() -> None:
    doc = {
        "_id": "v1",
        "status": "active",
        "baseline": {"popularity": {"ndcg@10": 0.1}},
        "timings": {"extract": 1.5, "fit": 3.004, "host": "spark"},
        "tuning": {"budget": 4, "blend_trials": [1, 2]},
    }
    summary = version_summary(doc)
    assert summary["version"] == "v1" and summary["status"] == "active"
    assert summary["baseline"] == {"ndcg@10": 0.1}
    assert summary["training_s"] == 4.5  # the numeric timings only
    assert summary["tuning"] == {"budget": 4}  # the blend trials are too long to send
    empty = version_summary({})
    assert empty["training_s"] == 0 and empty["metrics"] == {} and empty["gate"] is None


def test_closed_loop_run_is_the_newest_run() -> None:
    docs = [
        {"run_id": "r2", "created_at": 2, "config": {"users": 20}, "strategy": "hybrid", "users": 10},
        {"run_id": "r2", "created_at": 2, "config": {"users": 20}, "strategy": "random", "users": 10},
        {"run_id": "r1", "created_at": 1, "config": {}, "strategy": "hybrid", "users": 5},
    ]
    run = closed_loop_run(docs)
    assert run is not None
    assert (run["run_id"], run["created_at"], run["config"]) == ("r2", 2, {"users": 20})
    assert [(r["strategy"], r["users"], r["taste"]) for r in run["strategies"]] == [
        ("hybrid", 10, None),
        ("random", 10, None),
    ]
    assert closed_loop_run([]) is None


# --- pipeline health ----------------------------------------------------------------------------
def test_freshness_window() -> None:
    histogram = Histogram(
        "freshness_seconds", "", ["agent"], registry=CollectorRegistry(), buckets=(0.01, 0.05, 0.1)
    )
    nothing = {"window_s": None, "count": 0, "p50_ms": None, "p99_ms": None}
    assert FreshnessWindow().read(histogram, now=0.0) == nothing

    window = FreshnessWindow(window_s=60)
    histogram.labels(agent="history").observe(0.2)
    first = window.read(histogram, now=0.0)  # no earlier read: everything since the start
    assert first == {"window_s": None, "count": 1, "p50_ms": 100.0, "p99_ms": 100.0}  # in +Inf

    for agent, seconds in (("history", 0.005), ("engagement", 0.03), ("history", 0.03)):
        histogram.labels(agent=agent).observe(seconds)
    recent = window.read(histogram, now=30.0)  # since the first read, over every agent
    assert recent == {"window_s": 30, "count": 3, "p50_ms": 20.0, "p99_ms": 49.4}

    histogram.labels(agent="history").observe(0.07)
    # From the newest read at least `window_s` old: the one at 30 s, not the first.
    later = window.read(histogram, now=100.0)
    assert later == {"window_s": 70, "count": 1, "p50_ms": 75.0, "p99_ms": 99.5}


# --- dead letters ---------------------------------------------------------------------------------
def test_a_dead_letter_as_the_page_lists_it() -> None:
    letter = {
        "ts": 1,
        "source_topic": "t.interactions",
        "partition": 0,
        "offset": 7,
        "key": "u1",
        "reason": "type: field required",
        "value": "x" * 500,
    }
    assert summarise(json.dumps(letter).encode()) == {**letter, "value": "x" * 200}
    raw = summarise(b"\xffnot json")
    assert raw == {
        "ts": None,
        "source_topic": None,
        "partition": None,
        "offset": None,
        "key": None,
        "reason": "(not a DeadLetter record)",
        "value": "\ufffdnot json",
    }


class FakeConsumer:
    """The dead-letter partition as the reader's consumer sees it: offsets [0, len(values)), handed
    out `per_fetch` at a time from the last seek, then silence."""

    def __init__(self, values: list[bytes], per_fetch: int, delivered: int | None = None) -> None:
        self.values, self.per_fetch = values, per_fetch
        self.delivered = len(values) if delivered is None else delivered  # the rest never arrive
        self.position, self.fetches, self.paused = 0, 0, True

    async def beginning_offsets(self, tps: list) -> dict:
        return {tp: 0 for tp in tps}

    async def end_offsets(self, tps: list) -> dict:
        return {tp: len(self.values) for tp in tps}

    def seek(self, tp: object, offset: int) -> None:
        self.position = offset

    def resume(self, tp: object) -> None:
        self.paused = False

    def pause(self, tp: object) -> None:
        self.paused = True

    async def getmany(self, tp: object, timeout_ms: int) -> dict:
        assert not self.paused
        self.fetches += 1
        batch = self.values[self.position : min(self.position + self.per_fetch, self.delivered)]
        if not batch:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        self.position += len(batch)
        return {tp: [SimpleNamespace(value=v) for v in batch]}


def _letters(n: int) -> list[bytes]:
    return [json.dumps({"offset": i, "reason": "bad", "value": f"m{i}"}).encode() for i in range(n)]


async def test_dead_letters_reads_the_newest_few_once() -> None:
    reader = DeadLetters(Settings())
    reader.consumer = consumer = FakeConsumer(_letters(7), per_fetch=2)
    body = await reader.read(keep=5)
    assert body["topic"] == reader.tp.topic and body["total"] == 7
    assert [letter["offset"] for letter in body["recent"]] == [6, 5, 4, 3, 2]  # newest first
    assert consumer.fetches == 3 and consumer.paused
    assert await reader.read(keep=5) == body and consumer.fetches == 3  # no new letter: no fetch


async def test_dead_letters_shows_what_came_within_two_seconds() -> None:
    reader = DeadLetters(Settings())
    reader.consumer = consumer = FakeConsumer(_letters(5), per_fetch=5, delivered=2)
    started = time.monotonic()
    body = await reader.read(keep=5)
    assert 2 <= time.monotonic() - started < 3
    assert body["total"] == 5 and [letter["offset"] for letter in body["recent"]] == [1, 0]
    assert consumer.paused
