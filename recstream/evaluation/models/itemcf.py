"""Item-CF exactly as the streaming agents and serving compute it, replayed over the training events.

The history agent's loop (scoring.engagement_weight -> covisit_pairs -> update_history, pairs summed
per batch of `batch_size` events), the covisit agent's (merge_neighbours per source video per batch,
at the batch's newest time; normalise_neighbours is what Redis holds) and serving's lookup
(the user's last `lookback` positive videos -> their top CANDIDATES_PER_SOURCE neighbours ->
itemcf_scores). No second implementation: only these functions compute anything.

`symmetric` feeds each directional pair (a -> b) back in reverse (b -> a) as well, through the same
merge: "watched together" instead of "watched a, then b", for data whose order means little (a random
split of ratings).

`replay` chooses which streaming code is replayed:

- "batches" (default, what `recstream evaluate` measures): the loop above, merge_neighbours per source
  per batch of `ctx.replay_batch` events (pairs summed undecayed within a batch, each list decayed and cut
  to `neighbours` at every merge), normalise_neighbours over the kept `neighbours`, serving's lookup of
  CANDIDATES_PER_SOURCE per source;
- "agents": what the agents and serving run today (`recstream.devtools.reference` replays the same): the history
  agent's streamstate.covisit_entries per event (both ways with `symmetric`, as `covisit_both_ways`),
  the covisit agent's streamstate.apply_pair per entry
  (scoring.add_pair: forward decay from the pair's own event time, so no batch boundary matters; a list
  is cut back to `neighbours` when it reaches twice that), the Redis list scoring.normalised_top(...,
  CANDIDATES_PER_SOURCE), and a serving process's cut to its best `serving_neighbours_per_video`
  (settings). A half-life acts here as it does live: in "batches", 10,000 events of a dataset can span
  weeks (MovieLens' leave-one-out training split is 2 batches) within which nothing decays.

`normalise` is how a source's neighbour weights w become the scores serving reads:

- "row" (served): w(a -> b) / R_a, R_a = the sum of a's kept weights (normalise_neighbours, or
  normalised_top for "agents"): each list sums to 1, so a popular source does not drown out the rest of
  a user's history;
- "cosine": w(a -> b) / sqrt(R_a * E_b): the destination's popularity divides too;
- "row-pop": row-normalised w(a -> b) * E_b ** -pop_beta (default 0.5): popular destinations
  discounted, each list still sums to 1 (pop_beta = 0 is "row").

E_v is the video's engagement: the sum of its positive engagement weights, decayed with the same
half-life as the pairs and in the same way (per batch for "batches", per event for "agents"), kept as a
log2 forward-decayed sum (scoring.add_trend_rank). Both alternatives are computed here only, in the
evaluation replay (the agents keep no such sum beside the neighbour lists: serving them would need
one), at the newest training time for every list. Unlike "row" (a list's shares do not change while it
is not touched), "cosine" lets the list of a source nobody watched lately fade against fresh ones.
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
from recstream.records import Interaction
from recstream.serving.recommend import CANDIDATES_PER_SOURCE
from recstream.streamstate import StreamParams, apply_pair, covisit_entries, new_history, new_neighbours

NO_DECAY_S = 1e12  # a half-life of ~30,000 years: nothing fades
NORMALISATIONS = ("row", "cosine", "row-pop")
REPLAYS = ("batches", "agents")
DEFAULT_POP_BETA = 0.5
MIN_SCORE = 1e-300  # "agents" and the alternatives: smaller scores are dropped (underflow, see _fit_agents)


def served(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    return {
        "lookback": s.covisit_lookback,
        "recency": s.covisit_recency,
        "neighbours": s.neighbours_per_video,
        "half_life_s": s.covisit_half_life_s,
        "history_length": s.history_length,
        "symmetric": s.covisit_both_ways,
        "normalise": "row",
    }


@dataclass
class FittedItemCF:
    ds: Dataset
    histories: dict[str, list]
    neighbours: dict[str, dict[str, float]]  # normalised, as serving reads them
    params: dict[str, Any]
    raw: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)
    """"batches" only: before normalisation, {source: {destination: [weight, updated_ms]}}, as
    merge_neighbours left it."""
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
        normalise, replay = str(p["normalise"]), str(p.get("replay", "batches"))
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, not {normalise!r}")
        if replay not in REPLAYS:
            raise ValueError(f"replay must be one of {REPLAYS}, not {replay!r}")
        events = ds.events_of(time_order(ds, rows))
        if replay == "agents":
            return _fit_agents(ds, events, p, ctx)
        lookback, recency = int(p["lookback"]), float(p["recency"])
        history_length, top_k = int(p["history_length"]), int(p["neighbours"])
        half_life, symmetric = float(p["half_life_s"]), bool(p["symmetric"])
        eng = engagement_params(ctx)
        histories: dict[str, list] = {}
        neighbours: dict[str, dict[str, list[float]]] = {}
        log_e: dict[str, float] = {}  # log2 forward-decayed engagement E_v, summed per batch
        while batch := list(itertools.islice(events, ctx.replay_batch)):
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
            for src, dsts in pairs.items():
                # The history agent rounds what it sends (CovisitBatch) to 6 decimals.
                sent = [(dst, round(w, 6)) for dst, w in dsts.items()]
                merged = scoring.merge_neighbours(neighbours.get(src, {}), sent, now, half_life, top_k)
                neighbours[src] = merged
            if normalise != "row":
                for video, w in engaged.items():
                    log_e[video] = _add_log(log_e.get(video), w, now, half_life)
        if normalise == "row":
            normalised = {src: scoring.normalise_neighbours(nb) for src, nb in neighbours.items()}
        else:
            beta = float(p.get("pop_beta", DEFAULT_POP_BETA))
            normalised = {
                # log2 of each weight, forward-decayed: the decay to a common time cancels in the scores.
                src: _normalise(
                    {dst: math.log2(w) + t / 1000 / half_life for dst, (w, t) in nb.items()},
                    log_e,
                    normalise,
                    beta,
                )
                for src, nb in neighbours.items()
            }
        return FittedItemCF(ds, histories, normalised, p, neighbours)


def _fit_agents(ds: Dataset, events: Iterator[Interaction], p: dict[str, Any], ctx: Context) -> FittedItemCF:
    """The "agents" replay (see the module docstring): reference.compute's item-CF part."""
    half_life, symmetric, normalise = float(p["half_life_s"]), bool(p["symmetric"]), str(p["normalise"])
    params = StreamParams(
        history_length=int(p["history_length"]),
        covisit_lookback=int(p["lookback"]),
        covisit_recency=float(p["recency"]),
        neighbours_per_video=int(p["neighbours"]),
        covisit_half_life_s=half_life,
        engagement=engagement_params(ctx),
        covisit_both_ways=symmetric,
    )
    histories: dict[str, dict[str, Any]] = {}
    states: dict[str, dict[str, Any]] = {}
    log_e: dict[str, float] = {}
    for offset, e in enumerate(events):
        state = histories.setdefault(e.user_id, new_history())
        weight = scoring.engagement_weight(e, params.engagement)
        if weight > 0 and normalise != "row":
            log_e[e.video_id] = _add_log(log_e.get(e.video_id), weight, e.ts, half_life)
        for src, dst, w, position in covisit_entries(state, e.video_id, e.ts, weight, offset, params):
            apply_pair(states.setdefault(src, new_neighbours()), dst, w, e.ts, 0, position, params)
    limit = ctx.settings.serving_neighbours_per_video
    if normalise == "row":
        lists = {
            src: dict(scoring.normalised_top(st["n"], CANDIDATES_PER_SOURCE)) for src, st in states.items()
        }
    else:
        beta = float(p.get("pop_beta", DEFAULT_POP_BETA))
        lists = {
            # add_pair keeps w * 2**((t - base) / half_life): its log2 plus base / half_life is absolute.
            src: _normalise(
                {dst: math.log2(w) + st["b"] / half_life for dst, w in st["n"].items() if w > 0},
                log_e,
                normalise,
                beta,
            )
            for src, st in states.items()
        }
    # A serving process keeps each list's best `serving_neighbours_per_video` (ServingState.set_neighbours).
    # Entries at or near 0 (add_pair's rebase past 2**64 underflows old weights; they stay until the list
    # is pruned) add nothing to a score and are dropped: itemcf_scores names a source only for a
    # contribution > 0, and recency**step * 1e-320 underflows to 0.
    served_lists = {}
    for src, nb in lists.items():
        nb = {dst: v for dst, v in nb.items() if v > MIN_SCORE}
        served_lists[src] = dict(sorted(nb.items(), key=lambda kv: -kv[1])[:limit]) if len(nb) > limit else nb
    return FittedItemCF(ds, {u: h["h"] for u, h in histories.items()}, served_lists, p)


def _add_log(log_sum: float | None, weight: float, ts_ms: int, half_life: float) -> float:
    """log2 of a forward-decayed sum, one more weight at ts_ms (scoring.add_trend_rank's sum)."""
    out = scoring.add_trend_rank(log_sum, weight, ts_ms, half_life)
    assert out is not None  # weight > 0
    return out


def _normalise(log_w: dict[str, float], log_e: dict[str, float], how: str, beta: float) -> dict[str, float]:
    """One source's scores by `how` ("cosine" or "row-pop", see the module docstring) from the log2 of
    its forward-decayed weights and of the forward-decayed E_v: the common decay cancels, and nothing
    underflows however long ago a list was touched."""
    if not log_w:
        return {}
    if how == "row-pop":
        logs = {dst: lw - beta * log_e[dst] for dst, lw in log_w.items()}
        top = max(logs.values())
        shares = {dst: 2.0 ** (v - top) for dst, v in logs.items()}
        total = sum(shares.values())
        return {dst: v / total for dst, v in shares.items() if v / total > MIN_SCORE}
    top = max(log_w.values())
    log_r = top + math.log2(sum(2.0 ** (lw - top) for lw in log_w.values()))
    scores = {dst: 2.0 ** (lw - 0.5 * (log_r + log_e[dst])) for dst, lw in log_w.items()}
    return {dst: v for dst, v in scores.items() if v > MIN_SCORE}  # a list faded to nothing is gone


def _uniq(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(
            isinstance(v, float) and isinstance(o, float) and math.isclose(v, o) or v == o for o in out
        ):
            out.append(v)
    return out
