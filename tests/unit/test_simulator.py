"""The synthetic world without Kafka: determinism, realism of the stream, and the ground-truth tastes.
Also the progress line the simulator and the replay share."""

from __future__ import annotations

import io
import itertools
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
from tqdm import tqdm

from recstream.producers.publish import progress_bar
from recstream.producers.simulator import SimConfig, SimulatedWorld, WorldConfig
from recstream.records import Interaction

N = 60_000


@pytest.fixture(scope="module")
def world() -> SimulatedWorld:
    return SimulatedWorld(WorldConfig(users=800, videos=4000, seed=5))


@pytest.fixture(scope="module")
def events(world: SimulatedWorld) -> list[Interaction]:
    return list(itertools.islice(world.events(), N))


@pytest.fixture(scope="module")
def views(events: list[Interaction]) -> list[Interaction]:
    return [e for e in events if e.type == "view"]


def test_same_seed_same_world_and_stream() -> None:
    a, b = (SimulatedWorld(SimConfig(users=100, videos=300, seed=42, rate=5)) for _ in range(2))
    assert list(a.catalog()) == list(b.catalog())
    assert list(itertools.islice(a.events(), 3000)) == list(itertools.islice(b.events(), 3000))
    # With a wall clock only the timestamps differ: the sequence of actions is the seed's.
    ticks = itertools.count(10**12, 7)
    walled = list(itertools.islice(a.events(clock=ticks.__next__), 3000))
    virtual = list(itertools.islice(b.events(), 3000))
    assert [e.model_dump(exclude={"ts"}) for e in walled] == [e.model_dump(exclude={"ts"}) for e in virtual]
    other = SimulatedWorld(WorldConfig(users=100, videos=300, seed=43))
    assert list(itertools.islice(other.events(), 50)) != virtual[:50]


def test_catalog(world: SimulatedWorld) -> None:
    videos = list(world.catalog(created_at=123))
    assert len(videos) == 4000 and len({v.video_id for v in videos}) == 4000
    assert all(5000 <= v.duration_ms <= 120_000 and v.created_at == 123 for v in videos)
    assert 1 < len({v.creator_id for v in videos}) < 4000  # creators have several videos each
    assert len({v.category for v in videos}) > 10


def test_fast_skips_replays_and_actions(views: list[Interaction], events: list[Interaction]) -> None:
    skip_share = sum(e.watch_time_ms < 2000 for e in views) / len(views)
    replay_share = sum(e.watch_time_ms > e.duration_ms for e in views) / len(views)
    assert 0.15 < skip_share < 0.45, skip_share
    assert 0.03 < replay_share < 0.2, replay_share
    counts = Counter(e.type for e in events)
    assert counts["like"] > counts["share"] > 0 and counts["comment"] > 0 and counts["follow"] > 0
    assert counts["skip"] > 0
    # Likes follow watching: the like rate of completed views far exceeds that of fast skips.
    liked = {(e.user_id, e.video_id, e.ts) for e in events if e.type == "like"}
    completed = [e for e in views if e.watch_time_ms >= e.duration_ms]
    skipped = [e for e in views if e.watch_time_ms < 2000]
    rate = lambda vs: sum((e.user_id, e.video_id, e.ts) in liked for e in vs) / len(vs)  # noqa: E731
    assert rate(completed) > 0.15 and rate(skipped) < 0.03


def test_popularity_is_skewed(views: list[Interaction]) -> None:
    per_video = sorted(Counter(e.video_id for e in views).values(), reverse=True)
    top_decile = sum(per_video[: 4000 // 10]) / len(views)
    assert top_decile > 0.4, top_decile  # uniform would be 0.1


def test_behaviour_follows_the_hidden_taste(world: SimulatedWorld, views: list[Interaction],
                                            events: list[Interaction]) -> None:  # fmt: skip
    taste = [world.taste(e.user_id, e.video_id) for e in views]
    ratio = [min(e.watch_time_ms / e.duration_ms, 3) for e in views]
    assert np.corrcoef(taste, ratio)[0, 1] > 0.4
    liked = np.mean([world.taste(e.user_id, e.video_id) for e in events if e.type == "like"])
    skipped = np.mean([t for t, e in zip(taste, views, strict=True) if e.watch_time_ms < 2000])
    assert liked - skipped > 0.3, (liked, skipped)
    # The vector form is the same truth (what a closed-loop evaluation ranks against).
    row = world.tastes("u7")
    assert row.shape == (4000,) and all(
        abs(row[v] - world.taste("u7", f"v{v}")) < 1e-9 for v in (0, 17, 3999)
    )
    assert 0 < row.min() and row.max() < 1


def test_sessions_give_co_visitation_structure(world: SimulatedWorld, views: list[Interaction]) -> None:
    """Consecutive videos of a user share a category or creator more often than the same user's videos
    taken in random order: the signal item-CF needs."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for e in views:
        by_user[e.user_id].append(int(e.video_id[1:]))

    def related(seqs: list[list[int]]) -> float:
        pairs = [(a, b) for s in seqs for a, b in itertools.pairwise(s)]
        same = sum(
            world._vcat[a] == world._vcat[b] or world._vcreator[a] == world._vcreator[b] for a, b in pairs
        )
        return same / len(pairs)

    rng = random.Random(0)
    shuffled = [rng.sample(s, len(s)) for s in by_user.values()]
    assert related(list(by_user.values())) > 1.25 * related(shuffled)


def test_timestamps_increase(events: list[Interaction]) -> None:
    ts = [e.ts for e in events]
    assert ts == sorted(ts) and ts[0] == WorldConfig().start_ms


# --- progress ----------------------------------------------------------------------------------------
class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def shown(bar: tqdm, *steps: int | str) -> None:
    """Drive a bar as a publisher does: `update(n)` for numbers, the detail for strings; every step is
    drawn (no minimum interval)."""
    bar.mininterval, bar.miniters = 0, 1
    for step in steps:
        if isinstance(step, str):
            bar.set_postfix_str(step, refresh=False)
        else:
            bar.update(step)
    bar.close()


def test_progress_redraws_one_line_on_a_terminal() -> None:
    out = FakeTTY()
    bar = progress_bar("replay", stream=out)
    assert bar.mininterval == 0.2  # a few times a second
    shown(bar, 1500, "at 2022-05-01", 500)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert text.rstrip().rsplit("\r", 1)[1].startswith("replay: 2000 events [")
    assert "at 2022-05-01" in text


def test_progress_prints_lines_when_not_a_terminal_and_nothing_when_quiet() -> None:
    log = io.StringIO()
    bar = progress_bar("simulate", "400 videos", stream=log)
    assert bar.mininterval == 5.0  # a log gets a line every few seconds
    shown(bar, 1, 1)
    bar.close()  # idempotent
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    # At the start, at each update, and the final numbers once more at the end.
    assert [line.split(" [")[0] for line in lines] == [f"simulate: {n} events" for n in (0, 1, 2, 2)]
    assert all(line.endswith(", 400 videos]") for line in lines), lines
    quiet = io.StringIO()
    shown(progress_bar("simulate", stream=quiet, quiet=True), 10)
    assert quiet.getvalue() == ""


def test_simulate_out_writes_the_worlds_log_as_json_lines(tmp_path) -> None:  # noqa: ANN001
    import subprocess
    import sys
    from pathlib import Path

    from recstream.datasets import iter_events

    out = tmp_path / "sim.jsonl"
    cli = Path(sys.executable).parent / "recstream"
    done = subprocess.run(
        [
            str(cli),
            "simulate",
            "--users",
            "50",
            "--videos",
            "80",
            "--events",
            "500",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = list(iter_events("jsonl", out))
    assert len(events) == 500 and len({e.user_id for e in events}) > 10
    assert [e.ts for e in events] == sorted(e.ts for e in events)  # the virtual clock: time-ordered
