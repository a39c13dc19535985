"""The offline item-CF's `normalise` choices on a tiny case worked out by hand; "row" is what serving does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recstream import scoring
from recstream.devtools import reference
from recstream.evaluation.data import from_events
from recstream.evaluation.models import Context
from recstream.evaluation.models.itemcf import NO_DECAY_S, ItemCF, served
from recstream.records import Interaction
from recstream.serving.recommend import CANDIDATES_PER_SOURCE
from recstream.settings import Settings
from recstream.streamstate import StreamParams


def view(user: str, video: str, ts_s: int) -> Interaction:
    # No duration: the weight is watch time / 60 s, capped at 1 -> every view here weighs 1.
    return Interaction(type="view", user_id=user, video_id=video, ts=ts_s * 1000, watch_time_ms=60_000)


# a: x then y.  b: x then y.  c: z, x, then y.  d: y alone.
# Pairs (recency 0.8, lookback 10): x -> y 1 (a) + 1 (b) + 1 (c); z -> x 1; z -> y 0.8 (two steps back).
# Engagement E: x 3, y 4, z 1.
EVENTS = [
    view("a", "x", 1),
    view("a", "y", 2),
    view("b", "x", 3),
    view("b", "y", 4),
    view("c", "z", 5),
    view("c", "x", 6),
    view("c", "y", 7),
    view("d", "y", 8),
]


def approx(nested: dict[str, dict[str, float]]) -> dict[str, object]:
    return {src: pytest.approx(scores) for src, scores in nested.items()}


def fit(**params: object) -> dict[str, dict[str, float]]:
    ds = from_events(EVENTS)
    ctx = Context(Settings(covisit_both_ways=False))
    return ItemCF.fit(ds, np.arange(ds.n_rows), {"half_life_s": NO_DECAY_S, **params}, ctx).neighbours


def test_row_is_the_served_normalisation_unchanged() -> None:
    assert served(Context(Settings()))["normalise"] == "row"
    ds = from_events(EVENTS)
    ctx = Context(Settings(covisit_both_ways=False))
    fitted = ItemCF.fit(ds, np.arange(ds.n_rows), {"half_life_s": NO_DECAY_S}, ctx)
    # Exactly scoring.normalise_neighbours of what merge_neighbours kept, with or without the parameter.
    assert fitted.neighbours == {src: scoring.normalise_neighbours(nb) for src, nb in fitted.raw.items()}
    assert fitted.neighbours == fit(normalise="row")
    assert set(fitted.raw) == {"x", "z"}
    assert fitted.raw["x"]["y"][0] == pytest.approx(3.0)
    assert fitted.raw["z"]["x"][0] == pytest.approx(1.0) and fitted.raw["z"]["y"][0] == pytest.approx(0.8)
    assert fitted.neighbours["x"] == pytest.approx({"y": 1.0})
    assert fitted.neighbours["z"] == pytest.approx({"x": 1 / 1.8, "y": 0.8 / 1.8})


def test_cosine_by_hand() -> None:
    # w(a -> b) / sqrt(R_a * E_b): R_x = 3, R_z = 1.8; E_x = 3, E_y = 4.
    nb = fit(normalise="cosine")
    assert nb["x"] == pytest.approx({"y": 3 / math.sqrt(3 * 4)})
    assert nb["z"] == pytest.approx({"x": 1 / math.sqrt(1.8 * 3), "y": 0.8 / math.sqrt(1.8 * 4)})


def test_row_pop_by_hand() -> None:
    # Row-normalised w * E_dst ** -beta: z -> x 1 / 3**0.5, z -> y 0.8 / 4**0.5.
    nb = fit(normalise="row-pop", pop_beta=0.5)
    x, y = 1 / math.sqrt(3), 0.8 / 2
    assert nb["z"] == pytest.approx({"x": x / (x + y), "y": y / (x + y)})
    assert nb["x"] == pytest.approx({"y": 1.0})
    assert fit(normalise="row-pop", pop_beta=0.0) == approx(fit())  # beta 0 is row
    with pytest.raises(ValueError):
        fit(normalise="column")


def test_one_batch_decays_nothing() -> None:
    # "batches": the 8 events are one batch, pairs and E summed undecayed: a half-life changes nothing.
    assert fit(normalise="cosine", half_life_s=1.0) == approx(fit(normalise="cosine"))


def test_agents_replay_is_the_reference_and_decays_per_event() -> None:
    ds = from_events(EVENTS)
    settings = Settings()
    rows = np.arange(ds.n_rows)
    # "row": what the agents hold (recstream.devtools.reference, from the same events), as serving reads it.
    ref = reference.compute(((0, i, e) for i, e in enumerate(EVENTS)), StreamParams.from_settings(settings))
    want = {
        src: dict(scoring.normalised_top(st["n"], CANDIDATES_PER_SOURCE))
        for src, st in ref.neighbours.items()
    }
    assert ItemCF.fit(ds, rows, {"replay": "agents"}, Context(settings)).neighbours == want
    # Half-life 1 s, every weight decayed from its own event's time to t = 8 s:
    #   x -> y at 2, 4, 7; z -> x 1 at 6; z -> y 0.8 at 7.  E_x at 1, 3, 6; E_y at 2, 4, 7, 8.
    w_xy, w_zx, w_zy = 2**-6 + 2**-4 + 2**-1, 2**-2, 0.8 * 2**-1
    e_x, e_y = 2**-7 + 2**-5 + 2**-2, 2**-6 + 2**-4 + 2**-1 + 1
    r_z = w_zx + w_zy
    nb = fit(normalise="cosine", half_life_s=1.0, replay="agents")
    assert nb["x"] == pytest.approx({"y": math.sqrt(w_xy / e_y)})
    assert nb["z"] == pytest.approx({"x": w_zx / math.sqrt(r_z * e_x), "y": w_zy / math.sqrt(r_z * e_y)})
    row = fit(half_life_s=1.0, replay="agents")
    assert row["z"] == pytest.approx({"x": w_zx / r_z, "y": w_zy / r_z})
    # A serving process keeps each list's best `serving_neighbours_per_video`, its shares as they are.
    one = ItemCF.fit(
        ds,
        rows,
        {"replay": "agents", "half_life_s": 1.0},
        Context(Settings(serving_neighbours_per_video=1, covisit_both_ways=False)),
    )
    assert one.neighbours["z"] == pytest.approx({"y": w_zy / r_z})
