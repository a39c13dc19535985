"""A synthetic short-video platform with hidden user tastes: the data behind `recstream simulate`.

The world (catalog, users, their tastes) is built from the seed; `SimulatedWorld.events()` is a pure,
deterministic generator of the event stream, so tests and benchmarks use it without Kafka, and a
recommender can be scored against `taste(user, video)`, the ground truth no real dataset has.

Realism, each by construction: users have Dirichlet tastes over categories and a few favourite
creators; video popularity is Zipf; durations are log-normal in 5-120 s; watch time depends on taste
(many fast skips under 2 s on disliked videos, replays over 100 % on loved short ones); likes, shares,
comments and follows grow with taste x watch ratio; users watch in sessions, and after an engaged view
the next video often comes from the same creator or category, which gives co-visitation its structure.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from recstream.records import EventType, Interaction, Video

CATEGORY_NAMES = (
    "comedy", "dance", "food", "pets", "sports", "music", "beauty", "gaming", "travel", "fashion",
    "tech", "education", "cars", "fitness", "diy", "news", "art", "family", "nature", "movies",
)  # fmt: skip
FAST_SKIP_MS = 2000


@dataclass(frozen=True)
class WorldConfig:
    """The shape of the synthetic world: its size, seed, and the knobs of its behaviour."""

    users: int = 1000
    videos: int = 5000
    seed: int = 0
    categories: int = 20
    videos_per_creator: int = 25
    zipf_exponent: float = 1.0
    taste_concentration: float = 0.3
    """Dirichlet alpha of category tastes: lower = narrower tastes."""
    session_length: float = 12.0
    """Mean videos per session."""
    concurrent_sessions: int = 64
    related_prob: float = 0.45
    """After an engaged view, chance the next video comes from the same creator or category."""
    start_ms: int = 1_700_000_000_000
    """Virtual clock start when `events()` runs without a clock."""
    step_ms: int = 100
    """Virtual clock step per watched video."""


class _Session:
    __slots__ = ("user", "theta", "favs", "cat_cum", "left", "last_engaged", "seen")

    def __init__(self, user: int, theta: list[float], favs: frozenset[int], cat_cum: list[float], left: int):
        self.user, self.theta, self.favs, self.cat_cum, self.left = user, theta, favs, cat_cum, left
        self.last_engaged: int | None = None
        self.seen: set[int] = set()


class SimulatedWorld:
    """Catalog, users and hidden tastes from one seed; `catalog()` and `events()` generate the data."""

    def __init__(self, config: WorldConfig) -> None:
        import numpy as np  # here, not at import: `recstream --help` stays fast

        self.config = c = config
        rng = np.random.default_rng(c.seed)
        self.n_creators = max(1, c.videos // c.videos_per_creator)
        cat_pop = rng.dirichlet(np.full(c.categories, 2.0))
        creator_cat = rng.choice(c.categories, size=self.n_creators, p=cat_pop)
        # Prolific and occasional creators: creator output is itself heavy-tailed.
        out = 1.0 / np.arange(1, self.n_creators + 1) ** 0.7
        self.video_creator = rng.choice(self.n_creators, size=c.videos, p=out / out.sum())
        own = rng.random(c.videos) < 0.85  # most creators stay in their niche
        self.video_cat = np.where(
            own, creator_cat[self.video_creator], rng.choice(c.categories, size=c.videos, p=cat_pop)
        )
        self.duration_ms = (np.clip(rng.lognormal(math.log(25.0), 0.7, c.videos), 5, 120) * 1000).astype(int)
        self.popularity = 1.0 / (rng.permutation(c.videos) + 1.0) ** c.zipf_exponent
        self.quality = rng.normal(0.0, 0.5, c.videos)
        self.theta = rng.dirichlet(np.full(c.categories, c.taste_concentration), size=c.users)
        # Favourite creators: three per user, drawn from the categories the user likes.
        picks = (
            (self.theta.cumsum(1)[:, None, :] < rng.random((c.users, 3, 1)))
            .sum(-1)
            .clip(max=c.categories - 1)
        )
        by_cat = [np.flatnonzero(creator_cat == k) for k in range(c.categories)]
        r = rng.random((c.users, 3))
        self.favs = [
            frozenset(
                int(by_cat[k][int(r[u, j] * len(by_cat[k]))])
                for j, k in enumerate(picks[u])
                if len(by_cat[k])
            )
            for u in range(c.users)
        ]
        self.activity = rng.lognormal(0.0, 1.0, c.users)
        # Python lists for the per-event hot path (numpy scalar access is slower than list indexing).
        self._cat_pop = (
            np.bincount(self.video_cat, self.popularity, c.categories) / self.popularity.sum()
        ).tolist()
        self._vcat, self._vcreator = self.video_cat.tolist(), self.video_creator.tolist()
        self._dur, self._quality = self.duration_ms.tolist(), self.quality.tolist()
        self._user_cum = list(itertools.accumulate(self.activity.tolist()))
        self._by_cat = self._pools(self.video_cat, c.categories)
        self._by_creator = self._pools(self.video_creator, self.n_creators)
        self._all = self._pools(np.zeros(c.videos, dtype=int), 1)[0]

    def _pools(self, group: Any, n: int) -> list[tuple[list[int], list[float]]]:
        """Per group: its videos and their cumulative popularity (for weighted draws by bisection).
        One sort, not one scan per group: creators number in the thousands for big catalogs."""
        import numpy as np

        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(n + 1))
        out = []
        for k in range(n):
            ids = order[bounds[k] : bounds[k + 1]]
            out.append((ids.tolist(), list(itertools.accumulate(self.popularity[ids].tolist()))))
        return out

    # --- ground truth ---------------------------------------------------------------------------
    def user_id(self, u: int) -> str:
        return f"u{u}"

    def video_id(self, v: int) -> str:
        return f"v{v}"

    def category_name(self, k: int) -> str:
        return CATEGORY_NAMES[k] if k < len(CATEGORY_NAMES) else f"category{k}"

    def _logit(self, theta_k: float, is_fav: bool, quality: float) -> float:
        c = self.config
        return (
            1.5 * max(math.log(theta_k * c.categories + 1e-9), -3.0)
            + (2.0 if is_fav else 0.0)
            + quality
            - 1.0
        )

    def taste(self, user: str | int, video: str | int) -> float:
        """How much the user likes the video, in (0, 1): the hidden truth behind their behaviour."""
        u = int(user[1:]) if isinstance(user, str) else user
        v = int(video[1:]) if isinstance(video, str) else video
        k = self._vcat[v]
        return 1 / (
            1
            + math.exp(
                -self._logit(float(self.theta[u, k]), self._vcreator[v] in self.favs[u], self._quality[v])
            )
        )

    def tastes(self, user: str | int) -> Any:
        """`taste(user, v)` for every video v (numpy array, index = video number)."""
        import numpy as np

        u = int(user[1:]) if isinstance(user, str) else user
        theta = np.maximum(np.log(self.theta[u, self.video_cat] * self.config.categories + 1e-9), -3.0)
        fav = np.isin(self.video_creator, list(self.favs[u]))
        return 1 / (1 + np.exp(-(1.5 * theta + 2.0 * fav + self.quality - 1.0)))

    # --- data -----------------------------------------------------------------------------------
    def catalog(self, created_at: int | None = None) -> Iterator[Video]:
        created = created_at if created_at is not None else self.config.start_ms
        for v in range(self.config.videos):
            cat = self.category_name(self._vcat[v])
            yield Video(
                video_id=self.video_id(v),
                creator_id=f"c{self._vcreator[v]}",
                duration_ms=self._dur[v],
                category=cat,
                hashtags=[cat],
                caption=f"{cat} clip {v} by c{self._vcreator[v]}",
                created_at=created,
            )

    def events(self, clock: Callable[[], int] | None = None) -> Iterator[Interaction]:
        """The endless event stream. The sequence depends on the seed only; `clock` stamps each watched
        video (default: a virtual clock from start_ms in step_ms steps, so the output is reproducible)."""
        c = self.config
        rng = random.Random(c.seed + 1)
        if clock is None:
            virtual = itertools.count(c.start_ms, c.step_ms)
            clock = virtual.__next__
        active: list[_Session] = []
        users_active: set[int] = set()
        while True:
            while len(active) < min(c.concurrent_sessions, c.users):
                s = self._new_session(rng, users_active)
                active.append(s)
                users_active.add(s.user)
            i = rng.randrange(len(active))
            s = active[i]
            v = self._next_video(rng, s)
            yield from self._watch(rng, s, v, clock())
            s.left -= 1
            if s.left <= 0:
                users_active.discard(s.user)
                active[i] = active[-1]
                active.pop()

    def _new_session(self, rng: random.Random, busy: set[int]) -> _Session:
        for _ in range(8):  # a user watches one session at a time (when there are enough users)
            u = bisect.bisect(self._user_cum, rng.random() * self._user_cum[-1])
            if u not in busy:
                break
        theta = self.theta[u].tolist()
        mix = [0.7 * t + 0.3 * p for t, p in zip(theta, self._cat_pop, strict=True)]
        extra = self.config.session_length - 1  # sessions are 1 + exponential videos long
        length = 1 + int(rng.expovariate(1 / extra)) if extra > 0 else 1
        return _Session(u, theta, self.favs[u], list(itertools.accumulate(mix)), length)

    @staticmethod
    def _pick(rng: random.Random, pool: tuple[list[int], list[float]]) -> int:
        ids, cum = pool
        return ids[min(bisect.bisect(cum, rng.random() * cum[-1]), len(ids) - 1)]

    def _next_video(self, rng: random.Random, s: _Session) -> int:
        v = 0
        for _ in range(4):  # re-draw a few times to avoid repeats within a session
            if s.last_engaged is not None and rng.random() < self.config.related_prob:
                last = s.last_engaged
                pool = (
                    self._by_creator[self._vcreator[last]]
                    if rng.random() < 0.5
                    else self._by_cat[self._vcat[last]]
                )
            else:
                k = min(bisect.bisect(s.cat_cum, rng.random() * s.cat_cum[-1]), len(s.cat_cum) - 1)
                pool = self._by_cat[k]
            v = self._pick(rng, pool if pool[0] else self._all)
            if v not in s.seen:
                break
        s.seen.add(v)
        return v

    def _watch(self, rng: random.Random, s: _Session, v: int, ts: int) -> list[Interaction]:
        fav = self._vcreator[v] in s.favs
        t = 1 / (1 + math.exp(-self._logit(s.theta[self._vcat[v]], fav, self._quality[v])))
        d = self._dur[v]
        u, vid = self.user_id(s.user), self.video_id(v)
        if rng.random() < 0.05 + 0.6 * (1 - t) ** 2:  # a fast skip
            view = Interaction(
                type="view",
                user_id=u,
                video_id=vid,
                ts=ts,
                watch_time_ms=rng.randint(150, FAST_SKIP_MS - 1),
                duration_ms=d,
            )
            if rng.random() < 0.15:  # skipping shortens sessions
                s.left -= 1
            if rng.random() < 0.04 * (1 - t):  # "not interested"
                return [view, Interaction(type="skip", user_id=u, video_id=vid, ts=ts)]
            return [view]
        ratio = rng.betavariate(1 + 5 * t, 1 + 5 * (1 - t))
        # Loved, short videos loop: the replay share grows with taste and shrinks with length.
        if ratio > 0.8 and rng.random() < t * t * min(1.0, 20_000 / d):
            ratio = 1 + rng.random() * (2.0 if d < 15_000 else 1.0)
        watch = round(ratio * d)
        out = [Interaction(type="view", user_id=u, video_id=vid, ts=ts, watch_time_ms=watch, duration_ms=d)]
        engaged = t * min(watch / d, 1.5)
        actions: list[tuple[EventType, float]] = [
            ("like", 0.02 + 0.3 * engaged),
            ("share", 0.05 * engaged),
            ("comment", 0.04 * engaged),
            ("follow", (0.06 if fav else 0.015) * engaged),
        ]
        out += [Interaction(type=a, user_id=u, video_id=vid, ts=ts) for a, p in actions if rng.random() < p]
        if watch >= 0.5 * d or len(out) > 1:
            s.last_engaged = v
        return out
