"""Restart: stats and history survive a worker restart, from RocksDB and, with the local state gone,
from the changelog topics alone (the Kappa claim: state is derived from the log)."""

from __future__ import annotations

import shutil
import uuid

import redis

from .conftest import Cluster, get, post, wait_for


def _view(user: str, video: str) -> dict:
    return {
        "type": "view",
        "user_id": user,
        "video_id": video,
        "watch_time_ms": 10_000,
        "duration_ms": 10_000,
    }


def _restart(cluster: Cluster, wipe_local_state: bool) -> None:
    worker = cluster.workers[0]
    worker.stop()
    # Serving caches are derived state too: drop them so only the tables can bring the numbers back.
    redis.Redis.from_url(cluster.settings.redis_url).flushdb()
    if wipe_local_state:
        shutil.rmtree(cluster.settings.data_dir / "faust", ignore_errors=True)
    worker.start()


def test_state_survives_restarts(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:6]
    video, user = f"rv-{tag}", f"ru-{tag}"
    others = [f"ro-{tag}-{i}" for i in range(3)]
    post(
        cluster.url + "/events",
        {"events": [_view(f"rw-{tag}-{i}", video) for i in range(5)] + [_view(user, o) for o in others]},
    )
    assert wait_for(lambda: get(f"{cluster.url}/videos/{video}/stats")[1].get("views") == 5, timeout=10)

    for wipe in (False, True):
        _restart(cluster, wipe_local_state=wipe)
        # One more view: the count continues from the recovered table, it does not start again at 1.
        post(cluster.url + "/events", {"events": [_view(f"rx-{tag}-{wipe}", video), _view(user, video)]})
        expected = 7 if not wipe else 9
        stats = wait_for(
            lambda n=expected: (s := get(f"{cluster.url}/videos/{video}/stats")[1]).get("views") == n and s,
            timeout=30,
        )
        assert stats, (wipe, get(f"{cluster.url}/videos/{video}/stats")[1])
        # The user's history came back too: nothing they watched before the restart is recommended.
        items = {
            i["video_id"] for i in get(f"{cluster.url}/recommendations/{user}?preview=true&k=100")[1]["items"]
        }
        assert not items & set(others), (wipe, items)
