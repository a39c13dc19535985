"""Restart: stats and history survive a worker restart, from RocksDB and, with the local state gone,
from the changelog topics alone (the Kappa claim: state is derived from the log)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest
import redis

from recstream.devtools.devcluster import request

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


def test_a_worker_stops_promptly_with_requests_under_way(cluster: Cluster) -> None:
    """SIGTERM while users are being served: the worker stops taking requests, finishes those under way
    and exits within seconds. (It used to close its Redis and Kafka clients while its web server still
    took requests; a request then opened new ones and waited for a serving state nothing would load,
    until the process was killed 30 s later.)"""
    worker = cluster.workers[0]
    done = threading.Event()

    def poll() -> None:
        n = 0
        while not done.is_set():
            n += 1
            try:
                request("GET", f"{worker.url}/recommendations/stop-{n % 50}?k=10", timeout=2)
            except OSError:  # refused once the listener is closed: keep trying until the test ends
                time.sleep(0.01)

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(4)]
    for t in pollers:
        t.start()
    try:
        time.sleep(1.0)
        assert worker.proc is not None
        t0 = time.monotonic()
        os.killpg(worker.proc.pid, signal.SIGTERM)
        try:
            worker.proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker was still running 20 s after SIGTERM; log {worker.log}")
        took = time.monotonic() - t0
        assert took < 10, f"the worker took {took:.1f} s to stop; log {worker.log}"
    finally:
        done.set()
        for t in pollers:
            t.join(5)
        worker.stop()
        worker.start()
        cluster.wait_settled()
