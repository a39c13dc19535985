"""The closed loop's simulated users: how one reacts to a list the API served them.

A user watches (or skips) each video shown according to their hidden taste in the synthetic world,
and may stop scrolling: the rest of the list is shown and never watched. Every video shown is an
`Impression` (what the statistics count); the watching produces the `Interaction`s the loop posts back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recstream.records import Interaction, now_ms

if TYPE_CHECKING:
    from recstream.datasets.synthetic import SimulatedWorld

UNLABELLED = "unlabelled"  # a response without `strategy`: serving does not bucket users yet
FAST_SKIP_MS = 2000
REPEAT_SHOWINGS = 3

Exposure = dict[tuple[int, int], list]
"""(user, video) -> [times shown, engaged]: what the loop has shown each user, over every round."""


@dataclass
class Impression:
    user: str
    video: str
    strategy: str
    taste: float
    base_taste: float  # the user's mean taste over the whole catalogue: what random shows on average
    watch_ms: int
    duration_ms: int
    completed: bool
    liked: bool
    repeat: bool = False
    """The user had been shown this video 3+ times before without engaging with it (a view past the
    fast skip, or a like): the exposure serving's impressions rule should prevent."""


def react(
    world: SimulatedWorld,
    rng: random.Random,
    user: int,
    video: int,
    ts: int,
    completion_ratio: float,
    base_taste: float = math.nan,
) -> tuple[list[Interaction], Impression]:
    """A view (fast skip or a taste-driven watch ratio, replays on loved short videos) plus a like
    with a taste x watch probability: the response curves of the world's organic sessions, driven by
    the world's own `taste()`."""
    t = world.taste(user, video)
    d = int(world.duration_ms[video])
    u, v = world.user_id(user), world.video_id(video)
    if rng.random() < 0.05 + 0.6 * (1 - t) ** 2:
        watch = rng.randint(150, FAST_SKIP_MS - 1)
    else:
        ratio = rng.betavariate(1 + 5 * t, 1 + 5 * (1 - t))
        if ratio > 0.8 and rng.random() < t * t * min(1.0, 20_000 / d):
            ratio = 1 + rng.random() * (2.0 if d < 15_000 else 1.0)
        watch = round(ratio * d)
    events = [Interaction(type="view", user_id=u, video_id=v, ts=ts, watch_time_ms=watch, duration_ms=d)]
    liked = watch >= FAST_SKIP_MS and rng.random() < 0.02 + 0.3 * t * min(watch / d, 1.5)
    if liked:
        events.append(Interaction(type="like", user_id=u, video_id=v, ts=ts))
    impression = Impression(u, v, UNLABELLED, t, base_taste, watch, d, watch >= completion_ratio * d, liked)
    return events, impression


def react_to_list(
    world: SimulatedWorld,
    rng: random.Random,
    user: int,
    answer: dict[str, Any],
    scroll_stop: float,
    completion_ratio: float,
    exposure: Exposure,
) -> tuple[list[Interaction], list[Impression]]:
    """One user's reaction to one `GET /recommendations` answer, top to bottom: the events to post and
    an impression per video shown, labelled with the strategy that served the list."""
    strategy = answer.get("strategy") or UNLABELLED
    base = float(world.tastes(user).mean())
    events: list[Interaction] = []
    impressions: list[Impression] = []
    scrolling = True
    for item in answer.get("items", []):
        video = int(item["video_id"].removeprefix("v"))
        if scrolling:
            evs, imp = react(world, rng, user, video, now_ms(), completion_ratio, base)
            scrolling = rng.random() >= scroll_stop
        else:  # shown below where the user stopped: an impression and nothing else
            evs = []
            imp = Impression(
                world.user_id(user),
                world.video_id(video),
                UNLABELLED,
                world.taste(user, video),
                base,
                0,
                int(world.duration_ms[video]),
                False,
                False,
            )
        imp.strategy = strategy
        past = exposure.setdefault((user, video), [0, False])
        imp.repeat = past[0] >= REPEAT_SHOWINGS and not past[1]
        past[0] += 1
        past[1] = past[1] or imp.watch_ms >= FAST_SKIP_MS or imp.liked
        events += evs
        impressions.append(imp)
    return events, impressions
