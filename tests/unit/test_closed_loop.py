"""The closed loop's parts without a cluster: its figures, how its users react to a served list, and its
HTTP client against a stand-in API (the loop end to end: tests/integration/test_closed_loop.py)."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from recstream.datasets.synthetic import SimulatedWorld, WorldConfig
from recstream.evaluation.metrics import mean_ci
from recstream.producers.closed_loop_api import POST_BATCH, LoopApi
from recstream.producers.closed_loop_stats import compare, difference, figures, summarise
from recstream.producers.closed_loop_users import UNLABELLED, Impression, react_to_list
from recstream.records import Interaction, Video


# --- figures ----------------------------------------------------------------------------------------
def test_figures_are_the_offline_evaluations_interval_with_none_where_undefined() -> None:
    assert figures([]) == {"mean": None, "ci95": None}
    assert figures([0.25]) == {"mean": 0.25, "ci95": None}  # one user: no interval
    values = [0.0, 1.0, 0.5, 0.2]
    mean, half = mean_ci(np.array(values))
    assert figures(values) == {"mean": mean, "ci95": half}
    assert math.isclose(half, 1.96 * float(np.std(values, ddof=1)) / 2)


def imp(user: str, strategy: str, watch_ms: int, liked: bool = False, taste: float = 0.5) -> Impression:
    return Impression(user, "v1", strategy, taste, 0.2, watch_ms, 10_000, watch_ms >= 9_000, liked)


def test_summarise_averages_per_user_first() -> None:
    # User a: 2 impressions, both liked; user b: 1, not liked -> like rate (1 + 0) / 2, not 2 / 3.
    rows = summarise(
        [imp("a", "hybrid", 9_500, True), imp("a", "hybrid", 9_000, True), imp("b", "hybrid", 1_000)]
        + [imp("c", "random", 500), imp("d", "random", 3_000)]
    )
    assert list(rows) == ["hybrid", "random"]
    assert (rows["hybrid"]["users"], rows["hybrid"]["impressions"]) == (2, 3)
    assert rows["hybrid"]["like_rate"]["mean"] == 0.5
    assert rows["hybrid"]["click_through"]["mean"] == 0.5  # b's 1 s view is a fast skip
    assert rows["random"]["watch_time_ms"]["mean"] == 1_750
    assert math.isclose(rows["random"]["taste_lift"]["mean"], 0.3)


def test_each_bucket_against_the_served_default() -> None:
    a, b = {"mean": 0.3, "ci95": 0.03}, {"mean": 0.1, "ci95": 0.04}
    d = difference(a, b)
    assert math.isclose(d["diff"], 0.2) and math.isclose(d["ci95"], 0.05) and d["significant"]
    assert difference(b, {"mean": 0.12, "ci95": 0.04})["significant"] is False
    assert difference(a, {"mean": 0.1, "ci95": None}) == {"diff": None, "ci95": None, "significant": None}
    rows = {"hybrid": {m: a for m in ("watch_time_ms", "completion_rate", "like_rate", "taste_lift")}}
    rows["random"] = dict.fromkeys(rows["hybrid"], b)
    assert set(compare(rows)) == {"random"} and compare(rows)["random"]["taste_lift"] == d
    assert compare({"random": rows["random"]}) == {}  # no served default in the run


# --- users ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world() -> SimulatedWorld:
    return SimulatedWorld(WorldConfig(users=20, videos=50, seed=1))


def answer(videos: list[int], strategy: str | None = "itemcf") -> dict[str, Any]:
    return {"strategy": strategy, "items": [{"video_id": f"v{v}"} for v in videos]}


def test_a_user_who_stops_scrolling_leaves_the_rest_shown_not_watched(world: SimulatedWorld) -> None:
    events, imps = react_to_list(world, random.Random(3), 4, answer([1, 2, 3]), 1.0, 0.9, {})
    assert [i.video for i in imps] == ["v1", "v2", "v3"] and {i.strategy for i in imps} == {"itemcf"}
    assert {e.video_id for e in events} == {"v1"} and events[0].type == "view"  # only the first watched
    assert all(i.watch_ms == 0 and not i.liked for i in imps[1:])
    assert imps[2].taste == world.taste(4, 3)
    assert imps[0].base_taste == pytest.approx(float(world.tastes(4).mean()))
    _, unlabelled = react_to_list(world, random.Random(3), 4, answer([1], None), 0.0, 0.9, {})
    assert unlabelled[0].strategy == UNLABELLED


def test_a_fourth_showing_without_engagement_is_a_repeat(world: SimulatedWorld) -> None:
    exposure: dict = {}
    # Scrolling stops after the first video: the second is shown and never engaged with.
    repeats = [
        react_to_list(world, random.Random(n), 2, answer([5, 6]), 1.0, 0.9, exposure)[1][1].repeat
        for n in range(5)
    ]
    assert repeats == [False, False, False, True, True]
    assert exposure[(2, 6)] == [5, False]


# --- the HTTP client --------------------------------------------------------------------------------
Handler = Callable[[web.Request], Any]


@pytest.fixture
async def stand_in() -> AsyncIterator[Callable[[dict[str, Handler]], Any]]:
    """Serve the given routes ("METHOD /path": handler) on a free port; yields a function that starts
    the server and returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for route, handler in routes.items():
            method, path = route.split(" ", 1)
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def test_posts_go_in_batches_with_the_write_key(stand_in) -> None:  # noqa: ANN001
    bodies: list[dict] = []

    async def events(request: web.Request) -> web.Response:
        assert request.headers["X-API-Key"] == "w-key"
        bodies.append(await request.json())
        return web.json_response({"accepted": len(bodies[-1]["events"])}, status=202)

    url = await stand_in({"POST /events": events})
    sent = [Interaction(type="like", user_id=f"u{n}", video_id="v1", ts=1) for n in range(POST_BATCH * 2 + 5)]
    async with LoopApi(url, "w-key") as api:
        await api.post_events(sent)
    assert [len(b["events"]) for b in bodies] == [POST_BATCH, POST_BATCH, 5]
    assert bodies[0]["events"][0] == {"type": "like", "user_id": "u0", "video_id": "v1", "ts": 1}


async def test_an_unexpected_status_is_an_error_naming_it(stand_in) -> None:  # noqa: ANN001
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "no key"}, status=401)

    url = await stand_in({"POST /videos": refuse, "GET /recommendations/{user}": refuse})
    async with LoopApi(url, None) as api:
        with pytest.raises(RuntimeError, match=r"POST .*/videos -> 401: .*no key"):
            await api.post_videos([Video(video_id="v1", creator_id="c1")])
        with pytest.raises(RuntimeError, match=r"GET /recommendations -> 401: .*no key"):
            await api.recommendations("u1", 5)


async def test_waits_until_the_api_serves_then_gives_up_with_the_reason(stand_in) -> None:  # noqa: ANN001
    asked = {"trending": 0}

    async def trending(request: web.Request) -> web.Response:
        asked["trending"] += 1  # empty until the third poll, as while the worker digests the warm-up
        return web.json_response({"items": [{"video_id": "v1"}] if asked["trending"] >= 3 else []})

    async def recommendations(request: web.Request) -> web.Response:
        return web.json_response({"items": [{"video_id": "v2"}], "model_version": "als-1"})

    url = await stand_in({"GET /trending": trending, "GET /recommendations/{user}": recommendations})
    async with LoopApi(url, None) as api:
        await api.wait_ready("u1", timeout_s=10)
        assert asked["trending"] == 3
        await api.wait_served("als-1", ["u1"], timeout_s=5)
        with pytest.raises(RuntimeError, match=r"did not serve model als-2 within 1 s"):
            await api.wait_served("als-2", ["u1", "u2"], timeout_s=1)
