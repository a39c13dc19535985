"""recstream.metrics helpers that reach into prometheus_client (pinned behaviour, checked here)."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from recstream.metrics import observe_many

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("h_seconds", "test", ["agent"], registry=registry, buckets=BUCKETS)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample but the creation time, by name and labels (the sum is added in another order)."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_observe_many_equals_observe_one_at_a_time() -> None:
    rng = random.Random(3)
    values = [rng.choice([0.0, 0.01, 0.05, 1.0, 5.0, 7.5]) for _ in range(200)]  # bounds themselves too
    values += [rng.expovariate(2.0) for _ in range(800)]
    one, many = CollectorRegistry(), CollectorRegistry()
    single = _histogram(one).labels(agent="a")
    for v in values:
        single.observe(v)
    observe_many(_histogram(many).labels(agent="a"), values)
    got, want = _samples(many), _samples(one)
    assert {k: v for k, v in got.items() if "_sum" not in k} == {
        k: v for k, v in want.items() if "_sum" not in k
    }
    assert abs(got['h_seconds_sum{agent="a"}'] - want['h_seconds_sum{agent="a"}']) < 1e-9
    assert got['h_seconds_bucket{agent="a",le="0.01"}'] > 0 and got['h_seconds_count{agent="a"}'] == 1000


def test_observe_many_of_nothing_changes_nothing() -> None:
    registry = CollectorRegistry()
    child = _histogram(registry).labels(agent="a")
    before = generate_latest(registry)
    observe_many(child, [])
    assert generate_latest(registry) == before
