"""Prometheus metrics of this process (served at GET /metrics).

Several web processes sharing a port (`recstream web --processes N`) report as one: the parent sets
PROMETHEUS_MULTIPROC_DIR before it starts them, prometheus_client then keeps every value in files there,
and whichever process answers a scrape sums them (`exposition`). Gauges say how they combine.
"""

from __future__ import annotations

import gc
import os
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

registry = CollectorRegistry()

events_processed = Counter(
    "recstream_events_processed_total",
    "Interaction events processed by the agents",
    ["type"],
    registry=registry,
)
messages_processed = Counter(
    "recstream_messages_processed_total", "Messages processed per agent", ["agent"], registry=registry
)
dead_letters = Counter(
    "recstream_dead_letters_total", "Messages sent to the dead-letter topic", ["topic"], registry=registry
)
impressions_lost = Counter(
    "recstream_impressions_lost_total",
    "Answers whose impressions message Kafka did not take (uncounted)",
    registry=registry,
)
events_accepted = Counter(
    "recstream_http_events_accepted_total", "Events accepted by POST /events", registry=registry
)
requests_refused = Counter(
    "recstream_http_refused_total",
    "Requests refused with a 4xx, by route and reason",
    ["route", "reason"],
    registry=registry,
)
degraded_answers = Counter(
    "recstream_degraded_recommendations_total",
    "Recommendations answered without the user's history because Redis was unreachable",
    registry=registry,
)
request_latency = Histogram(
    "recstream_request_latency_seconds",
    "HTTP request latency",
    ["route"],
    registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
freshness = Histogram(
    "recstream_freshness_seconds",
    "From an event's append to Kafka to its effect being readable in Redis",
    ["agent"],
    registry=registry,
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
consumer_lag = Gauge(
    "recstream_consumer_lag",
    "Messages not yet consumed, per topic partition",
    ["topic", "partition"],
    registry=registry,
)
sink_retries = Counter(
    "recstream_sink_retries_total",
    "Writes retried because a sink (redis, mongo, kafka) failed",
    ["sink"],
    registry=registry,
)
mongo_documents = Counter(
    "recstream_mongo_documents_written_total",
    "Documents the agents wrote (upserted or deleted) to MongoDB, per collection",
    ["collection"],
    registry=registry,
)
redis_rebuilds = Counter(
    "recstream_redis_rebuilds_total",
    "Times this worker wrote its views to Redis again after Redis lost its data",
    registry=registry,
)
flushes = Counter(
    "recstream_state_flushes_total",
    "State flushes (tables, changelogs, forwarded messages) per agent",
    ["agent"],
    registry=registry,
)
serving_state_age = Gauge(
    "recstream_serving_state_age_seconds",
    "Seconds since this process last refreshed a part of its serving state from Redis (-1: never)",
    ["part"],
    registry=registry,
    multiprocess_mode="livemax",
)


gc_seconds = Counter(
    "recstream_gc_seconds_total",
    "Time spent in Python's cyclic garbage collector, by generation",
    ["generation"],
    registry=registry,
)


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each value, with one increment per bucket: the history agent observes
    every event's freshness, and observe() one at a time cost ~1 % of the worker's CPU. Uses
    prometheus_client's own fields (non-cumulative `_buckets`, `_sum`, `_upper_bounds`; a value goes
    to the first bound it does not exceed, as observe() puts it); tests/unit/test_metrics.py holds the
    two equal."""
    if not values:
        return
    bounds = histogram._upper_bounds
    counts: dict[int, int] = {}
    for v in values:
        i = bisect_left(bounds, v)
        counts[i] = counts.get(i, 0) + 1
    for i, n in counts.items():
        histogram._buckets[i].inc(n)
    histogram._sum.inc(sum(values))


def track_gc() -> None:
    """Count the collector's time in `gc_seconds` (a callback per collection, not per allocation)."""
    started: list[float] = [0.0]
    by_generation = [gc_seconds.labels(generation=str(g)) for g in range(3)]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            by_generation[info["generation"]].inc(time.perf_counter() - started[0])

    if not any(getattr(cb, "__name__", "") == "on_gc" for cb in gc.callbacks):
        gc.callbacks.append(on_gc)


def exposition() -> bytes:
    """The text a scrape gets: this process's metrics, or all web processes' when they share a port."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return generate_latest(combined)
    return generate_latest(registry)
