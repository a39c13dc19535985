"""A replay of the real KuaiRand sample through the whole pipeline yields the stats the file implies."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from recstream.devtools.devcluster import Cluster, get, wait_for
from tests.conftest import KUAIRAND_SAMPLE

SAMPLE = KUAIRAND_SAMPLE


def expected_stats() -> dict[str, dict[str, int]]:
    """Per-video counters computed straight from the CSV with the documented definitions."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(SAMPLE, newline="") as f:
        for row in csv.DictReader(f):
            s = out[row["video_id"]]
            play, duration = int(row["play_time_ms"]), int(row["duration_ms"])
            s["views"] += 1
            s["watch_time_ms"] += play
            s["completions"] += int(duration > 0 and play >= 0.9 * duration)
            s["skips"] += int(play < 2000) + int(row["is_hate"])  # a fast view, and an explicit hate
            s["likes"] += int(row["is_like"])
            s["shares"] += int(row["is_forward"])
            s["comments"] += int(row["is_comment"])
            s["follows"] += int(row["is_follow"])
    return out


def test_kuairand_replay_matches_the_file(cluster: Cluster) -> None:
    expected = expected_stats()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "recstream"),
            "replay",
            "kuairand",
            str(SAMPLE),
            "--as-fast-as-possible",
            "--quiet",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    def observed() -> dict[str, dict]:
        return {v: get(f"{cluster.url}/videos/{v}/stats")[1] for v in expected}

    def all_views_in() -> bool:
        return all(s.get("views") == expected[v]["views"] for v, s in observed().items())

    assert wait_for(all_views_in, timeout=30, interval=0.5)
    got = observed()
    for video, counts in expected.items():
        for field, value in counts.items():
            assert got[video][field] == value, (video, field, got[video])
        views = counts["views"]
        assert got[video]["completion_rate"] == round(counts["completions"] / views, 4)
