"""Training to serving, end to end: simulate -> `recstream train` (Spark, local master) -> registry ->
a running worker serves ALS candidates with the model version, picks up a new version without a
restart, keeps a gated model out, and folds in a brand-new user from two live engagements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recstream.devtools.devcluster import Cluster, get, post, wait_for
from recstream.serving.model_store import ModelRegistry

CLI = str(Path(sys.executable).parent / "recstream")


def _run(cluster: Cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=cluster.env, capture_output=True, text=True, timeout=timeout)


def _train(cluster: Cluster, *extra: str, status: int = 0) -> dict:
    result = _run(cluster, "train", "--rank", "16", "--max-iter", "6", "--tune-trials", "2", "--json", *extra)
    assert result.returncode == status, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _als_items(url: str, user: str) -> tuple[str | None, list[dict]]:
    body = get(f"{url}/recommendations/{user}?preview=true&k=20")[1]
    return body["model_version"], [i for i in body["items"] if "als" in i["reasons"]]


def _trained_user(cluster: Cluster, version: str) -> str:
    registry = ModelRegistry(cluster.settings)
    try:
        return registry.load(version).user_ids[0]
    finally:
        registry.close()


@pytest.fixture(scope="module")
def trained(cluster: Cluster) -> dict:
    sim = _run(
        cluster,
        "simulate",
        "--users",
        "150",
        "--videos",
        "120",
        "--rate",
        "0",
        "--events",
        "6000",
        "--seed",
        "11",
        "--quiet",
    )
    assert sim.returncode == 0, sim.stderr[-2000:]
    assert wait_for(lambda: get(cluster.url + "/trending?k=1")[1]["items"], timeout=30)
    return _train(cluster)


def test_first_model_is_registered_active_and_served(cluster: Cluster, trained: dict) -> None:
    assert trained["activated"] is True
    assert trained["metrics"]["ndcg@10"] > 0 and "ndcg@10" in trained["baseline"]
    registry = ModelRegistry(cluster.settings)
    try:
        doc = registry.get(trained["version"])
        assert doc is not None and doc["metrics"]["ndcg@10"] == trained["metrics"]["ndcg@10"]
        assert registry.active_version() == trained["version"]
    finally:
        registry.close()
    # A simulated user the model was trained on gets ALS candidates, labelled with the version.
    user = _trained_user(cluster, trained["version"])
    for url in cluster.urls:  # the worker's views and the web role
        version, als = wait_for(lambda u=url: (r := _als_items(u, user))[1] and r, timeout=15) or (None, [])
        assert version == trained["version"] and als, get(f"{url}/recommendations/{user}?preview=true&k=20")[
            1
        ]


def test_new_user_is_folded_in_before_any_retrain(cluster: Cluster, trained: dict) -> None:
    newbie = "brand-new-user"
    assert _als_items(cluster.url, newbie)[1] == []  # no history, no vector: trending and fresh only
    for video in ("v1", "v2"):
        post(
            cluster.url + "/events",
            {
                "type": "view",
                "user_id": newbie,
                "video_id": video,
                "watch_time_ms": 30_000,
                "duration_ms": 30_000,
            },
        )
    for url in cluster.urls:
        version, als = wait_for(lambda u=url: (r := _als_items(u, newbie))[1] and r, timeout=10) or (None, [])
        assert version == trained["version"] and als
        assert not {"v1", "v2"} & {i["video_id"] for i in als}


def test_new_version_is_picked_up_and_a_gated_one_is_not(cluster: Cluster, trained: dict) -> None:
    second = _train(cluster, "--force")
    assert second["version"] != trained["version"] and second["activated"] is True
    user = _trained_user(cluster, second["version"])
    for url in cluster.urls:
        assert wait_for(lambda u=url: _als_items(u, user)[0] == second["version"], timeout=15)

    # A model of one factor and one sweep learns less than a chart: the gate keeps it out of serving.
    bad = _train(cluster, "--rank", "1", "--max-iter", "1", "--tune-trials", "1", status=5)  # 5: refused
    assert bad["activated"] is False
    registry = ModelRegistry(cluster.settings)
    try:
        assert registry.get(bad["version"]) is not None  # kept in the registry with its metrics
        assert registry.active_version() == second["version"]
    finally:
        registry.close()
    assert all(_als_items(url, user)[0] == second["version"] for url in cluster.urls)

    # Rolled back to the first model (the other tests here serve it, whichever order they run in).
    registry = ModelRegistry(cluster.settings)
    try:
        assert registry.activate_version(trained["version"]) == second["version"]
    finally:
        registry.close()
    first_user = _trained_user(cluster, trained["version"])
    for url in cluster.urls:
        assert wait_for(lambda u=url: _als_items(u, first_user)[0] == trained["version"], timeout=15)
