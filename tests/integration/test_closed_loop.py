"""Closed loop on a real worker: simulated users with hidden tastes request recommendations through the
API, react to them, and their events go back through Kafka. Users are bucketed by a stable hash into
strategies; the strategies that use what users did must show them videos they like more than random."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from recstream.closed_loop import COLLECTION, UNLABELLED, LoopConfig, run_loop
from recstream.datasets.synthetic import WorldConfig
from recstream.devcluster import Cluster
from recstream.recommend import strategy_for
from recstream.settings import Settings

# No ALS model is trained in this short run: the `als` bucket would be its trending filler only.
STRATEGIES = ["random", "trending", "itemcf", "hybrid"]


@pytest.fixture(scope="module")
def bucketed(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(services, tmp_path_factory.mktemp("closed-loop"), redis_db=14)
    c.env["RECSTREAM_STRATEGIES"] = json.dumps(STRATEGIES)
    c.start_worker()
    c.wait_settled()
    yield c
    c.stop()


async def test_closed_loop_taste_aware_strategies_beat_random(bucketed: Cluster) -> None:
    world = WorldConfig(users=400, videos=1500, seed=5)
    config = LoopConfig(users=240, rounds=4, k=10, warmup_events=15_000, pause_s=1.5, api_url=bucketed.url)
    summary = await run_loop(bucketed.settings, world, config, log=lambda _line: None)
    strategies = summary["strategies"]
    if set(strategies) == {UNLABELLED}:
        pytest.skip("pending: serving does not bucket users yet (no `strategy` in /recommendations)")

    assert set(strategies) == set(STRATEGIES)
    for name, row in strategies.items():
        assert row["users"] >= 30, name  # a stable hash spreads 240 users over 4 buckets
        assert row["impressions"] >= row["users"] * config.rounds, name
        for metric in ("watch_time_ms", "completion_rate", "like_rate", "taste"):
            assert row[metric]["mean"] is not None and row[metric]["ci95"] is not None, (name, metric)

    for name in ("itemcf", "hybrid"):
        # A two-sample test at 5 %: the difference exceeds 1.96 standard errors of the difference
        # (ci95 is 1.96 standard errors of each mean). The hidden taste of what was shown is the
        # ground truth; watch time is what the platform would see.
        for metric in ("taste", "watch_time_ms"):
            a, b = strategies[name][metric], strategies["random"][metric]
            assert a["mean"] - b["mean"] > math.hypot(a["ci95"], b["ci95"]), (name, metric, a, b)

    # The response names the strategy, and it is the user's stable bucket.
    assert summary["assignments"]
    assert all(strategy_for(user, STRATEGIES) == s for user, s in summary["assignments"].items())

    with MongoClient(bucketed.settings.mongo_url) as client:
        docs = list(client[bucketed.settings.mongo_db][COLLECTION].find({"run_id": config.run_id}))
    assert {d["strategy"] for d in docs} == set(strategies)
