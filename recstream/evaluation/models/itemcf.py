"""Item-CF exactly as the streaming agents and serving compute it, replayed over the training events.

The history agent's loop (scoring.engagement_weight -> covisit_pairs -> update_history, pairs summed
per batch of `batch_size` events), the covisit agent's (merge_neighbours per source video per batch,
at the batch's newest time; normalise_neighbours is what Redis holds) and serving's lookup
(the user's last `lookback` positive videos -> their top CANDIDATES_PER_SOURCE neighbours ->
itemcf_scores). No second implementation: only these functions compute anything.

`symmetric` feeds each directional pair (a -> b) back in reverse (b -> a) as well, through the same
merge: "watched together" instead of "watched a, then b", for data whose order means little (a random
split of ratings).

`normalise` is how a source's kept neighbours (merge_neighbours' weights w) become the scores serving
reads:

- "row" (served): scoring.normalise_neighbours: w(a -> b) / R_a, R_a = the sum of a's kept weights;
  each source's list sums to 1, so a popular source does not drown out the rest of a user's history;
- "cosine": w(a -> b) / sqrt(R_a * E_b): the destination's popularity divides too;
- "row-pop": row-normalised w(a -> b) * E_b ** -pop_beta (default 0.5): popular destinations
  discounted, each list still sums to 1 (pop_beta = 0 is "row").

E_v is the video's engagement: its positive engagement weights, summed per batch and decayed between
batches with the same half-life, exactly as its pair weights are (trending's add_trend). The two
alternatives are computed here only, in the evaluation replay (the agents keep no such sum beside the
neighbour lists: serving them would need one). They are applied on write, as Redis would hold them: a
source's list is re-scored with the E_v of the batch that last merged it.

`batch_span_s` (not a served setting; default: none) also cuts a replayed batch where it would span more
event time than that, so that a half-life acts within a replay of months as it would live: pairs are
summed undecayed within a batch, and 10,000 events of a dataset can span weeks.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recstream import scoring
from recstream.evaluation.data import Dataset
from recstream.evaluation.models import Context, GridSize
from recstream.evaluation.models.baselines import DAY_S, engagement_params, time_order
from recstream.recommend import CANDIDATES_PER_SOURCE
from recstream.records import Interaction

NO_DECAY_S = 1e12  # a half-life of ~30,000 years: nothing fades
NORMALISATIONS = ("row", "cosine", "row-pop")
DEFAULT_POP_BETA = 0.5


def served(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    return {
        "lookback": s.covisit_lookback,
        "recency": s.covisit_recency,
        "neighbours": s.neighbours_per_video,
        "half_life_s": s.covisit_half_life_s,
        "history_length": s.history_length,
        "symmetric": False,
        "normalise": "row",
    }


@dataclass
class FittedItemCF:
    ds: Dataset
    histories: dict[str, list]
    neighbours: dict[str, dict[str, float]]  # normalised, as Redis holds them ("row")
    params: dict[str, Any]
    raw: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)
    """Before normalisation: {source: {destination: [weight, updated_ms]}}, merge_neighbours' output."""
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
        normalise = str(p["normalise"])
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, not {normalise!r}")
        eng = engagement_params(ctx)
        histories: dict[str, list] = {}
        neighbours: dict[str, dict[str, list[float]]] = {}
        engagement: dict[str, tuple[float, int]] = {}  # video -> (decayed sum of positive weights, as of ms)
        written: dict[str, dict[str, float]] = {}  # the alternatives' lists, scored on write
        beta = float(p.get("pop_beta", DEFAULT_POP_BETA))
        events = ds.events_of(time_order(ds, rows))
        span = p.get("batch_span_s")
        batches = _batches(events, ctx.replay_batch, None if span is None else int(float(span) * 1000))
        while batch := next(batches, []):
            by_user: dict[str, list] = defaultdict(list)
            for e in batch:
                by_user[e.user_id].append(e)
            pairs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            engaged: dict[str, float] = defaultdict(float)
            for user, items in by_user.items():
                history = histories.get(user, [])
                for e in sorted(items, key=lambda e: e.ts):
                    weight = scoring.engagement_weight(e, eng)
                    if weight > 0:
                        engaged[e.video_id] += weight
                    for src, dst, w in scoring.covisit_pairs(history, e.video_id, weight, lookback, recency):
                        pairs[src][dst] += w
                        if symmetric:
                            pairs[dst][src] += w
                    history = scoring.update_history(history, e.video_id, e.ts, weight, history_length)
                histories[user] = history
            now = max(e.ts for e in batch)
            if normalise != "row":
                for video, w in engaged.items():
                    total, as_of = engagement.get(video, (0.0, now))
                    engagement[video] = scoring.add_trend(total, as_of, w, now, half_life)
            for src, dsts in pairs.items():
                # The history agent rounds what it sends (CovisitBatch) to 6 decimals.
                sent = [(dst, round(w, 6)) for dst, w in dsts.items()]
                merged = scoring.merge_neighbours(neighbours.get(src, {}), sent, now, half_life, top_k)
                neighbours[src] = merged
                if normalise != "row":
                    written[src] = _normalise(merged, engagement, now, half_life, normalise, beta)
        if normalise == "row":
            normalised = {src: scoring.normalise_neighbours(nb) for src, nb in neighbours.items()}
        else:
            normalised = written
        return FittedItemCF(ds, histories, normalised, p, neighbours)


def _batches(events: Iterator[Interaction], size: int, span_ms: int | None) -> Iterator[list[Interaction]]:
    """The replay's agent batches: `size` events each; with `span_ms`, also cut where a batch would span
    more event time than that (a live agent's batch holds seconds of events, a replay's 10,000 events
    can hold months of a dataset's, within which pairs are summed undecayed)."""
    if span_ms is None:
        while full := list(itertools.islice(events, size)):
            yield full
        return
    batch: list[Interaction] = []
    for e in events:
        if batch and (len(batch) >= size or e.ts - batch[0].ts > span_ms):
            yield batch
            batch = []
        batch.append(e)
    if batch:
        yield batch


def _normalise(
    neighbours: dict[str, list[float]],
    engagement: dict[str, tuple[float, int]],
    now: int,
    half_life: float,
    how: str,
    beta: float,
) -> dict[str, float]:
    """One source's merged list {dst: [w, now]} scored by `how` ("cosine" or "row-pop", see the module
    docstring) with E_v as of `now`."""
    e_dst = {dst: scoring.decay(*engagement[dst], now, half_life) for dst in neighbours}
    if how == "row-pop":
        return scoring.normalise_neighbours(
            {dst: [w * e_dst[dst] ** -beta, t] for dst, (w, t) in neighbours.items() if e_dst[dst] > 0}
        )
    total = sum(w for w, _t in neighbours.values())
    return {dst: w / math.sqrt(total * e_dst[dst]) for dst, (w, _t) in neighbours.items() if e_dst[dst] > 0}


def _uniq(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(
            isinstance(v, float) and isinstance(o, float) and math.isclose(v, o) or v == o for o in out
        ):
            out.append(v)
    return out
