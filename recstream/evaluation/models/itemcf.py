"""Item-CF exactly as the streaming agents and serving compute it, replayed over the training events.

The history agent's loop (scoring.engagement_weight -> covisit_pairs -> update_history, pairs summed
per batch of `batch_size` events), the covisit agent's (merge_neighbours per source video per batch,
at the batch's newest time; normalise_neighbours is what Redis holds) and serving's lookup
(the user's last `lookback` positive videos -> their top CANDIDATES_PER_SOURCE neighbours ->
itemcf_scores). No second implementation: only these functions compute anything.

`symmetric` feeds each directional pair (a -> b) back in reverse (b -> a) as well, through the same
merge: "watched together" instead of "watched a, then b", for data whose order means little (a random
split of ratings).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recstream import scoring
from recstream.evaluation.data import Dataset
from recstream.evaluation.models import Context, GridSize
from recstream.evaluation.models.baselines import DAY_S, engagement_params, time_order
from recstream.recommend import CANDIDATES_PER_SOURCE

NO_DECAY_S = 1e12  # a half-life of ~30,000 years: nothing fades


def served(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    return {
        "lookback": s.covisit_lookback,
        "recency": s.covisit_recency,
        "neighbours": s.neighbours_per_video,
        "half_life_s": s.covisit_half_life_s,
        "history_length": s.history_length,
        "symmetric": False,
    }


@dataclass
class FittedItemCF:
    ds: Dataset
    histories: dict[str, list]
    neighbours: dict[str, dict[str, float]]  # normalised, as Redis holds them
    params: dict[str, Any]
    _top: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def top_neighbours(self, video: str) -> dict[str, float]:
        """A video's best CANDIDATES_PER_SOURCE neighbours: what serving's ZREVRANGE returns."""
        top = self._top.get(video)
        if top is None:
            nbrs = self.neighbours.get(video, {})
            top = self._top[video] = dict(sorted(nbrs.items(), key=lambda kv: -kv[1])[:CANDIDATES_PER_SOURCE])
        return top

    def candidates(self, user: int) -> dict[str, tuple[float, str]]:
        """What serving's item-CF source gives this user: {video: (score, because-of video)}."""
        lookback = int(self.params["lookback"])
        history = self.histories.get(self.ds.user_ids[user], [])
        positive = [e for e in history if e[2] > 0][:lookback]
        lists = {video: self.top_neighbours(video) for video, _ts, _w in positive}
        return scoring.itemcf_scores(positive, lists, float(self.params["recency"]), lookback)

    def scores(self, users: np.ndarray) -> np.ndarray:
        index = {v: i for i, v in enumerate(self.ds.item_ids)}
        out = np.full((len(users), self.ds.n_items), -np.inf)
        for row, u in enumerate(users):
            for video, (score, _src) in self.candidates(int(u)).items():
                out[row, index[video]] = score
        return out


class ItemCF:
    NAME = "itemcf"

    @staticmethod
    def start(ctx: Context) -> dict[str, Any]:
        return served(ctx)

    @staticmethod
    def axes(size: GridSize, ctx: Context) -> dict[str, list[Any]]:
        s = served(ctx)
        if size == "small":
            return {"symmetric": [False, True], "half_life_s": _uniq([s["half_life_s"], NO_DECAY_S])}
        return {
            "symmetric": [False, True],
            "half_life_s": _uniq([s["half_life_s"], 30 * DAY_S, NO_DECAY_S]),
            "lookback": _uniq([s["lookback"], 20, 50]),
            "recency": _uniq([s["recency"], 0.9, 1.0]),
            "history_length": _uniq([s["history_length"], 200]),
            "neighbours": _uniq([s["neighbours"], 200]),
        }

    @staticmethod
    def fit(ds: Dataset, rows: np.ndarray, params: dict[str, Any], ctx: Context) -> FittedItemCF:
        p = {**served(ctx), **params}
        lookback, recency = int(p["lookback"]), float(p["recency"])
        history_length, top_k = int(p["history_length"]), int(p["neighbours"])
        half_life, symmetric = float(p["half_life_s"]), bool(p["symmetric"])
        eng = engagement_params(ctx)
        histories: dict[str, list] = {}
        neighbours: dict[str, dict[str, list[float]]] = {}
        events = ds.events_of(time_order(ds, rows))
        while batch := list(itertools.islice(events, ctx.replay_batch)):
            by_user: dict[str, list] = defaultdict(list)
            for e in batch:
                by_user[e.user_id].append(e)
            pairs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            for user, items in by_user.items():
                history = histories.get(user, [])
                for e in sorted(items, key=lambda e: e.ts):
                    weight = scoring.engagement_weight(e, eng)
                    for src, dst, w in scoring.covisit_pairs(history, e.video_id, weight, lookback, recency):
                        pairs[src][dst] += w
                        if symmetric:
                            pairs[dst][src] += w
                    history = scoring.update_history(history, e.video_id, e.ts, weight, history_length)
                histories[user] = history
            now = max(e.ts for e in batch)
            for src, dsts in pairs.items():
                # The history agent rounds what it sends (CovisitBatch) to 6 decimals.
                sent = [(dst, round(w, 6)) for dst, w in dsts.items()]
                merged = scoring.merge_neighbours(neighbours.get(src, {}), sent, now, half_life, top_k)
                neighbours[src] = merged
        normalised = {src: scoring.normalise_neighbours(nb) for src, nb in neighbours.items()}
        return FittedItemCF(ds, histories, normalised, p)


def _uniq(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(
            isinstance(v, float) and isinstance(o, float) and math.isclose(v, o) or v == o for o in out
        ):
            out.append(v)
    return out
