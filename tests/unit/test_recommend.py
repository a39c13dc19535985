"""The vectorised serving path against the reference blend (`scoring.itemcf_scores`, `blend`, `select`),
on random in-process states: same items, same order, same scores, same reasons."""

import random

import numpy as np
import pytest

from recstream import scoring
from recstream.redis_layout import bloom_positions
from recstream.serving.recommend import FILL_WEIGHT, recommend, source_weights
from recstream.serving.state import ServingState
from recstream.settings import Settings


def _state(rng: random.Random, settings: Settings, videos: int = 300) -> ServingState:
    state = ServingState(settings)
    ids = [f"v{i}" for i in range(videos)]
    for v in ids:
        i = state.intern(v)
        state.creator[i] = rng.randrange(40)
        state.in_catalog[i] = True
    for v in rng.sample(ids, videos * 2 // 3):
        state.set_neighbours(
            v, [[d, round(rng.random(), 4)] for d in rng.sample(ids, rng.randrange(1, 60)) if d != v]
        )
    trending = sorted(((v, rng.random()) for v in rng.sample(ids, 120)), key=lambda p: -p[1])
    fresh = sorted(((v, rng.random()) for v in rng.sample(ids, 50)), key=lambda p: -p[1])
    for name, pool in (("trending", trending), ("fresh", fresh)):
        idx = np.array([state.index[v] for v, _ in pool])
        val = np.array([s for _, s in pool]) / max(s for _, s in pool)
        setattr(state, name, (idx, val))
        getattr(state, f"in_{name}")[idx] = True
    return state


def _reference(state: ServingState, settings: Settings, history: list, seen: set[str], k: int) -> list:
    nbrs = {
        state.ids[src]: {state.ids[d]: float(s) for d, s in zip(*lists, strict=True)}
        for src in range(len(state.ids))
        if len((lists := state.neighbours(src))[0])
    }
    cf = scoring.itemcf_scores(history, nbrs, settings.covisit_recency, settings.covisit_lookback)
    trending = {state.ids[i]: float(s) for i, s in zip(*state.trending, strict=True)}
    fresh = {state.ids[i]: float(s) for i, s in zip(*state.fresh, strict=True)}
    candidates = scoring.blend(
        [
            (
                settings.blend_itemcf,
                {v: s for v, (s, _src) in cf.items()},
                {v: f"because you watched {src}" for v, (_s, src) in cf.items()},
            ),
            (settings.blend_trending, trending, "trending"),
            (settings.blend_fresh, fresh, "new"),
        ]
    )
    creators = {v: str(state.creator[i]) for v, i in state.index.items()}
    picked = scoring.select(candidates.values(), k, seen, creators, settings.max_per_creator)
    return [(c.video_id, round(c.score, 6), c.reasons) for c in picked]


@pytest.mark.parametrize("seed", range(12))
def test_the_vectorised_blend_gives_the_reference_answer(seed: int) -> None:
    rng = random.Random(seed)
    settings = Settings(strategies=["hybrid"])
    state = _state(rng, settings)
    history = [
        [f"v{rng.randrange(300)}", 1_000 - i, rng.choice([-0.5, 0.3, 1.0, 2.5])]
        for i in range(rng.randrange(0, 25))
    ]
    older = {f"v{rng.randrange(300)}" for _ in range(rng.randrange(0, 30))}  # seen before the history
    bits, hashes = settings.seen_bloom_bits, settings.seen_bloom_hashes
    bloom = bytearray(bits // 8)
    for v in older | {e[0] for e in history}:
        for b in bloom_positions(v, bits, hashes):
            bloom[b >> 3] |= 0x80 >> (b & 7)
    k = rng.choice([5, 20, 50])
    got = recommend(state, settings, "u1", k, history, bytes(bloom))
    expected = _reference(state, settings, history, older | {e[0] for e in history}, k)
    assert [(i["video_id"], i["score"], i["reasons"]) for i in got["items"]] == expected


def test_never_a_seen_video_even_when_only_the_filter_knows_it() -> None:
    settings = Settings(strategies=["trending"])
    state = _state(random.Random(1), settings)
    top = [state.ids[i] for i in state.trending[0][:10]]
    bits, hashes = settings.seen_bloom_bits, settings.seen_bloom_hashes
    bloom = bytearray(bits // 8)
    for v in top:
        for b in bloom_positions(v, bits, hashes):
            bloom[b >> 3] |= 0x80 >> (b & 7)
    got = [i["video_id"] for i in recommend(state, settings, "u", 20, [], bytes(bloom))["items"]]
    assert len(got) == 20 and not set(got) & set(top)


@pytest.mark.parametrize("als_pool", [0, 25, 1000])
@pytest.mark.parametrize("seed", range(6))
def test_als_scores_the_candidates_as_the_reference_does(seed: int, als_pool: int) -> None:
    from recstream.serving.foldin import LoadedModel, ModelCache
    from recstream.serving.model_store import ModelArtifact

    rng = random.Random(100 + seed)
    settings = Settings(strategies=["hybrid"], serving_als_pool_size=als_pool)
    state = _state(rng, settings)
    nprng = np.random.default_rng(seed)
    known = [f"v{i}" for i in range(0, 300, 2)]  # the model knows half the catalog
    artifact = ModelArtifact(
        "m1",
        ["u1"],
        known,
        nprng.normal(size=(1, 8)).astype(np.float32),
        nprng.normal(size=(len(known), 8)).astype(np.float32),
        {"reg_param": 0.1, "alpha": 1.0, "data_until_ms": 10**13},
    )
    models = ModelCache(None)
    models.set_model(LoadedModel.from_artifact(artifact))
    history = [
        [f"v{rng.randrange(300)}", 1_000 - i, rng.choice([0.3, 1.0, 2.5])]
        for i in range(rng.randrange(1, 25))
    ]
    got = recommend(state, settings, "u1", 20, history, b"", models)
    assert got["model_version"] == "m1"

    vector = models.user_vector("u1", history)
    nbrs = {
        state.ids[src]: {state.ids[d]: float(s) for d, s in zip(*lists, strict=True)}
        for src in range(len(state.ids))
        if len((lists := state.neighbours(src))[0])
    }
    cf = scoring.itemcf_scores(history, nbrs, settings.covisit_recency, settings.covisit_lookback)
    trending = {state.ids[i]: float(s) for i, s in zip(*state.trending, strict=True)}
    fresh = {state.ids[i]: float(s) for i, s in zip(*state.fresh, strict=True)}
    seen = {e[0] for e in history}
    model = models.model
    cf_best = sorted(cf, key=lambda v: -cf[v][0])[:200]  # ALS scores the pools and the best 200 of item-CF
    norm = {v: float(np.linalg.norm(model.item_factors[model.item_index[v]])) for v in model.item_index}
    unpooled = [v for v in model.item_index if v not in trending and v not in fresh]
    retrieval = sorted(unpooled, key=lambda v: -norm[v])[:als_pool]  # and its own longest vectors
    pool = [v for v in {*cf_best, *trending, *fresh, *retrieval} if v in model.item_index and v not in seen]
    scored = {v: float(model.item_factors[model.item_index[v]] @ vector) for v in pool}
    als = dict(sorted(scored.items(), key=lambda kv: -kv[1])[:200])
    candidates = scoring.blend(
        [
            (
                settings.blend_itemcf,
                {v: s for v, (s, _src) in cf.items()},
                {v: f"because you watched {src}" for v, (_s, src) in cf.items()},
            ),
            (settings.blend_als, als, "als"),
            (settings.blend_trending, trending, "trending"),
            (settings.blend_fresh, fresh, "new"),
        ]
    )
    creators = {v: str(state.creator[i]) for v, i in state.index.items()}
    expected = [
        (c.video_id, round(c.score, 6), c.reasons)
        for c in scoring.select(candidates.values(), 20, seen, creators, settings.max_per_creator)
    ]
    # Same items, order and reasons; scores to float32's precision (the factors' dtype).
    assert [(i["video_id"], i["reasons"]) for i in got["items"]] == [(v, r) for v, _s, r in expected]
    assert [i["score"] for i in got["items"]] == pytest.approx([s for _v, s, _r in expected], abs=1e-5)
    assert any("als" in i["reasons"] for i in got["items"])


def test_someone_new_gets_the_pools_answer_kept_until_the_next_refresh() -> None:
    settings = Settings(strategies=["hybrid"])
    state = _state(random.Random(3), settings)
    first = recommend(state, settings, "new-1", 20, [], b"")
    again = recommend(state, settings, "new-2", 20, [], b"")
    assert again["items"] == first["items"] and again["user_id"] == "new-2"
    assert len(recommend(state, settings, "new-3", 5, [], b"")["items"]) == 5  # per k
    assert [(i["video_id"], i["score"], i["reasons"]) for i in first["items"]] == _reference(
        state, settings, [], set(), 20
    )
    state._bases = {}  # what a refresh of the pools does
    state.trending = (state.trending[0][::-1].copy(), state.trending[1])  # the pools changed
    assert recommend(state, settings, "new-4", 20, [], b"")["items"] != first["items"]


@pytest.mark.parametrize("hidden", [30, 100])
def test_a_full_list_when_the_filter_hides_more_than_the_first_look(hidden: int) -> None:
    settings = Settings(strategies=["hybrid"])
    state = _state(random.Random(5), settings)
    top = [state.ids[i] for i in state.base(settings.blend_trending, settings.blend_fresh).order[:hidden]]
    bits, hashes = settings.seen_bloom_bits, settings.seen_bloom_hashes
    bloom = bytearray(bits // 8)
    for v in top:
        for b in bloom_positions(v, bits, hashes):
            bloom[b >> 3] |= 0x80 >> (b & 7)
    got = recommend(state, settings, "u", 20, [], bytes(bloom))
    assert [(i["video_id"], i["score"], i["reasons"]) for i in got["items"]] == _reference(
        state, settings, [], set(top), 20
    )
    assert len(got["items"]) == 20 and not {i["video_id"] for i in got["items"]} & set(top)


def test_the_hybrid_blends_with_the_models_weights_unless_the_settings_pin_them() -> None:
    published = {"itemcf": 0.5, "als": 4.0, "trending": 0.0}
    defaults = Settings()
    assert source_weights("hybrid", defaults) == {"itemcf": 1.0, "als": 1.0, "trending": 0.3, "fresh": 0.2}
    # fresh: not tuned; trending 0 is served as a fill (below every other source)
    assert source_weights("hybrid", defaults, published) == {
        **published,
        "trending": FILL_WEIGHT,
        "fresh": 0.2,
    }
    pinned = Settings(blend_als=2.0, blend_fresh=0.0)  # as RECSTREAM_BLEND_ALS=2 in the environment
    assert source_weights("hybrid", pinned, published) == {
        "itemcf": 0.5,
        "als": 2.0,
        "trending": FILL_WEIGHT,
        "fresh": 0.0,
    }
    assert source_weights("itemcf", defaults, published) == {"itemcf": 1.0, "trending": FILL_WEIGHT}


def test_a_hybrid_without_trending_or_fresh_still_fills_a_new_users_list() -> None:
    """A training round may publish trending 0 while fresh is pinned to 0: someone the model does not
    know, with no history, has nothing but the pools, and got an empty list (the closed loop's hybrid
    bucket lost 72 of its 206 users so, round after round). Trending fills it, ranked below the rest."""
    rng = random.Random(3)
    settings = Settings(strategies=["hybrid"], blend_fresh=0.0)
    state = _state(rng, settings)
    bloom = bytes(settings.seen_bloom_bits // 8)
    published = {"itemcf": 0.5, "als": 1.0, "trending": 0.0}

    class Models:  # an active model that does not know the user (no vector: nothing to fold in)
        model = type("M", (), {"blend": published, "user_index": {}, "version": "m1"})()

        def user_vector(self, user: str, history: list) -> None:
            return None

    got = recommend(state, settings, "newcomer", 10, [], bloom, Models())
    assert [i["video_id"] for i in got["items"]] == [state.ids[i] for i in state.trending[0][:10]]
    # A user whose item-CF candidates run out gets the rest of the list from trending, below them.
    history = [[state.ids[state.trending[0][0]], 1_000, 1.0]]
    got = recommend(state, settings, "u2", 30, history, bloom, Models())
    assert len(got["items"]) == 30
    scores = [i["score"] for i in got["items"]]
    assert scores == sorted(scores, reverse=True)


def test_a_pinned_weight_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTREAM_BLEND_TRENDING", "0.3")  # the default's value, but set: pinned
    assert source_weights("hybrid", Settings(), {"trending": 1.0, "als": 3.0})["trending"] == 0.3
    assert source_weights("hybrid", Settings(), {"trending": 1.0, "als": 3.0})["als"] == 3.0


def test_a_taken_down_video_is_never_served_and_published_again_is() -> None:
    """The catalog refresh keeps `any_removed` (the seen filter skips the taken-down flags while none
    is set) in step with the flags: down, never served; published again, served again."""
    import asyncio

    class CatalogRedis:  # what `_refresh_catalog` reads, one change at a time
        def __init__(self, creators: dict[bytes, bytes], removed: set[bytes]) -> None:
            self.creators, self.removed, self.changed = creators, removed, [b"v0"]

        async def get(self, _key: str) -> bytes:
            return b"1"

        async def zrangebyscore(self, *_args: object, **_kwargs: object) -> list:
            changed, self.changed = self.changed, []
            return [(m, 2) for m in changed]

        async def hmget(self, _key: str, members: list[bytes]) -> list:
            return [self.creators.get(m) for m in members]

        async def smismember(self, _key: str, members: list[bytes]) -> list[bool]:
            return [m in self.removed for m in members]

    settings = Settings(strategies=["trending"])
    state = _state(random.Random(4), settings)
    top = state.ids[state.trending[0][0]]
    served = lambda: [i["video_id"] for i in recommend(state, settings, "u", 20, [], b"")["items"]]  # noqa: E731
    assert top in served() and not state.any_removed
    fake = CatalogRedis({}, {top.encode()})
    fake.changed = [top.encode()]
    state.redis = fake  # type: ignore[assignment]
    asyncio.run(state._refresh_catalog(first=False))
    state._bases = {}  # what the pools' refresh does
    assert state.any_removed and top not in served() and len(served()) == 20
    fake.creators, fake.removed, fake.changed = {top.encode(): b"c1"}, set(), [top.encode()]
    asyncio.run(state._refresh_catalog(first=False))
    state._bases = {}
    assert not state.any_removed and top in served()


def test_ids_are_ranked_in_id_order_as_they_are_interned_batch_by_batch() -> None:
    rng = random.Random(7)
    state = ServingState(Settings())
    names = [f"v{rng.randrange(10**6)}" for _ in range(3000)]
    for size in (500, 1, 40, 7, 1200, 3, 600):  # a first load, then the few a refresh brings
        for name in names[:size]:
            state.intern(name)
        names = names[size:]
        state.rank_ids()
        order = sorted(range(len(state.ids)), key=state.ids.__getitem__)
        assert state.id_rank[order].tolist() == list(range(len(state.ids)))


def test_neighbour_lists_rewritten_many_times_read_back_as_last_written() -> None:
    rng = random.Random(3)
    state = ServingState(Settings())
    latest: dict[str, list] = {}
    for _ in range(4000):  # the arena fills with stale lists and is compacted several times
        video = f"v{rng.randrange(200)}"
        pairs = [[f"v{rng.randrange(500)}", rng.random()] for _ in range(rng.randrange(0, 30))]
        state.set_neighbours(video, pairs)
        latest[video] = pairs
    for video, pairs in latest.items():
        to, w = state.neighbours(state.index[video])
        assert [state.ids[i] for i in to.tolist()] == [p[0] for p in pairs]
        assert w.tolist() == pytest.approx([p[1] for p in pairs], rel=1e-6)  # float32
    assert state.neighbour_lists == sum(1 for p in latest.values() if p)
