"""`faust -A recstream.streaming.app worker` runs the same app as `recstream worker`."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from recstream.devtools.devcluster import Cluster, get, post, wait_for
from recstream.settings import Settings


def test_faust_cli_worker(services: Settings, tmp_path: Path) -> None:
    cluster = Cluster(services, tmp_path, redis_db=15)
    faust = str(Path(sys.executable).parent / "faust")
    try:
        cluster.start_worker(command=[faust, "-A", "recstream.streaming.app", "worker", "-l", "warn"])
        video = f"fv-{uuid.uuid4().hex[:6]}"
        assert post(cluster.url + "/events", {"type": "like", "user_id": "fu", "video_id": video})[0] == 202
        assert wait_for(lambda: get(f"{cluster.url}/videos/{video}/stats")[1].get("likes") == 1, timeout=15)
    except RuntimeError as exc:  # pragma: no cover - a failing start is the failure we report
        pytest.fail(str(exc))
    finally:
        cluster.stop()
