"""The dashboard in a real headless Chromium against a real worker: the figures on the page are the
API's, the charts draw, and the empty and worker-down states are clear. Screenshots: tests/artifacts/.

Each test passes alone and in any order: what a test adds (events, a dead letter, model versions, a
closed-loop run) is its own or removed after it, and figures of the shared burst are checked in the
overview the fixture kept before any test ran. The figures' maths: tests/unit/test_dashboard_data.py."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import sync_playwright
from pymongo import MongoClient

from recstream.kafka.topics import topic_names

from .conftest import Cluster, get, post, wait_for

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's Chromium, never a downloaded browser; no background traffic towards the closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TAG = uuid.uuid4().hex[:6]
A, B, C = (f"dash{TAG}-{x}" for x in "abc")
FRESH = [f"dash{TAG}-new{i}" for i in range(3)]
USERS = [f"dashu{TAG}-{i}" for i in range(10)]

OVERVIEW = "/api/overview?minutes=5&step=2"  # what the page asks for in its default 5-minute window
LIVE_KPIS = (
    "events_per_s",
    "active_users",
    "avg_watch_time_ms",
    "completion_rate",
    "like_rate",
    "share_rate",
)
# The burst, and what the overview must make of it.
EXPECTED = {
    "events": 27,
    "views": 20,
    "completion_rate": 0.45,
    "like_rate": 0.2,
    "share_rate": 0.1,
    "avg_watch_time_ms": 6675.0,
    "active_users": 10,
}


def _burst() -> list[dict]:
    events = []
    for i, user in enumerate(USERS):  # A (10 s): watched 10 s, 9.5 s ... 5.5 s -> 3 completions
        events.append(
            {
                "type": "view",
                "user_id": user,
                "video_id": A,
                "watch_time_ms": 10_000 - 500 * i,
                "duration_ms": 10_000,
            }
        )
    for user in USERS[:6]:  # B (8 s): watched to the end
        events.append(
            {"type": "view", "user_id": user, "video_id": B, "watch_time_ms": 8_000, "duration_ms": 8_000}
        )
    for user in USERS[6:]:  # C (20 s): 2 s each
        events.append(
            {"type": "view", "user_id": user, "video_id": C, "watch_time_ms": 2_000, "duration_ms": 20_000}
        )
    events += [{"type": "like", "user_id": u, "video_id": A} for u in USERS[:4]]
    events += [{"type": "share", "user_id": u, "video_id": B} for u in USERS[:2]]
    events += [{"type": "comment", "user_id": USERS[9], "video_id": C}]
    return events


@dataclass(frozen=True)
class Seeded:
    """The module's cluster once it has counted the burst."""

    cluster: Cluster
    overview: dict
    """GET /api/overview as soon as the burst was counted: before any test added events of its own."""

    @property
    def url(self) -> str:
        return self.cluster.url


@pytest.fixture(scope="module")
def seeded(cluster: Cluster) -> Seeded:
    cluster.wait_settled()  # the worker owns every partition: nothing sent now waits for a rebalance
    videos = [
        {
            "video_id": A,
            "creator_id": "cr-cats",
            "duration_ms": 10_000,
            "caption": "Cat meets cucumber",
            "hashtags": ["cats", "fail"],
            "category": "pets",
        },
        {
            "video_id": B,
            "creator_id": "cr-food",
            "duration_ms": 8_000,
            "caption": "Pasta in 8 seconds",
            "hashtags": ["food"],
        },
        {"video_id": C, "creator_id": "cr-skate", "duration_ms": 20_000, "caption": "Skate fail"},
    ]
    videos += [
        {"video_id": v, "creator_id": f"cr-new-{i}", "duration_ms": 15_000, "caption": f"Brand new {i}"}
        for i, v in enumerate(FRESH)
    ]  # no engagement: recommended as new
    assert post(cluster.url + "/videos", {"videos": videos})[0] == 202
    assert post(cluster.url + "/events", {"events": _burst()})[0] == 202

    def stats(video: str) -> dict:
        return get(f"{cluster.url}/videos/{video}/stats")[1]

    def counted() -> dict | None:
        overview = get(cluster.url + OVERVIEW)[1]
        done = (
            overview["totals"]["events"] == EXPECTED["events"]
            and stats(A).get("likes") == 4
            and stats(B).get("shares") == 2
            and stats(C).get("comments") == 1
        )
        return overview if done else None

    overview = wait_for(counted, timeout=20, interval=0.2)
    assert overview, get(cluster.url + OVERVIEW)[1]["totals"]
    return Seeded(cluster, overview)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


class Page:
    """A browser tab on the dashboard that records console errors and uncaught exceptions."""

    def __init__(self, browser, base: str) -> None:  # noqa: ANN001
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000})
        self.page = self.context.new_page()
        self.base = base
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def open(self, fragment: str = "#/live") -> None:
        self.page.goto(f"{self.base}/{fragment}")

    def wait_loaded(self, tab: str) -> None:
        self.page.wait_for_selector(f'body[data-loaded="{tab}"]', timeout=10_000)

    def kpi(self, root: str, key: str) -> str:
        return self.page.get_attribute(f'{root} [data-kpi="{key}"]', "data-value")

    def chart_drawn(self, canvas_id: str) -> dict:
        """Painted pixels on the canvas, and whether its Chart.js instance holds any non-zero value."""
        return self.page.evaluate(
            """(id) => {
            const c = document.getElementById(id), chart = Chart.getChart(c);
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let painted = 0;
            for (let i = 3; i < px.length; i += 4) if (px[i]) painted++;
            const values = chart ? chart.data.datasets.flatMap(d => d.data.map(p => p && typeof p === 'object' ? p.y : p)) : [];
            return {painted, hasData: values.some(v => typeof v === 'number' && v > 0), width: c.width};
        }""",
            canvas_id,
        )

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"dashboard-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser, seeded: Seeded) -> Iterator[Page]:  # noqa: ANN001
    p = Page(browser, seeded.url)
    yield p
    p.close()


def _close(a: str | None, b: float | None) -> bool:
    if b is None:
        return a in ("", None)
    return a not in ("", None) and math.isclose(float(a), b, rel_tol=1e-9, abs_tol=1e-9)


def _one_decimal(text: str, value: float, unit: str) -> bool:
    """`text` is `value` to one decimal, then `unit` (JavaScript's toFixed may round a tie up)."""
    shown = re.fullmatch(rf"(\d+\.\d){re.escape(unit)}", text)
    return shown is not None and abs(float(shown[1]) - value) <= 0.05 + 1e-9


# --- the JSON API the page reads ---------------------------------------------------------------
def test_api_overview_counts_the_burst(seeded: Seeded) -> None:
    body = seeded.overview
    totals = body["totals"]
    for key, value in EXPECTED.items():
        assert totals[key] == pytest.approx(value), key
    assert totals["by_type"] == {"view": 20, "like": 4, "share": 2, "comment": 1, "skip": 0, "follow": 0}
    series = body["series"]
    assert len(series["t"]) == 150 and series["t"][1] - series["t"][0] == 2
    assert sum(series["views"]) == 20
    assert sum(v * 2 for v in series["events_per_s"]["like"]) == pytest.approx(4)
    assert body["until_s"] - body["since_s"] == 300
    # The burst's ten users in the minute it came in (or the two it straddled), no one else.
    users = body["active_users"]["users"]
    assert max(users) <= 10 <= sum(users) and sum(n > 0 for n in users) <= 2, body["active_users"]


def test_api_trending_is_the_client_trending_with_metadata(seeded: Seeded) -> None:
    def rows(items: list[dict]) -> list[tuple]:
        return [(i["video_id"], i["views"], i["completion_rate"], i["likes"]) for i in items]

    def both() -> tuple[list, list] | None:
        ours = get(seeded.url + "/api/trending?k=10")[1]["items"]
        theirs = get(seeded.url + "/trending?k=10")[1]["items"]
        return (ours, theirs) if rows(ours) == rows(theirs) else None

    # Another test's last event may move the ranks between the two reads: compare two reads that agree.
    pair = wait_for(both, timeout=5, interval=0.2)
    assert pair, (get(seeded.url + "/api/trending?k=10")[1], get(seeded.url + "/trending?k=10")[1])
    ours = pair[0]
    by_id = {i["video_id"]: i for i in ours}
    assert {A, B, C} <= set(by_id), list(by_id)
    assert all(i["trend"]["direction"] in {"up", "down", "flat", "new"} for i in ours)
    assert by_id[A]["caption"] == "Cat meets cucumber" and by_id[A]["hashtags"] == ["cats", "fail"]
    assert by_id[A]["creator_id"] == "cr-cats" and by_id[A]["completion_rate"] == 0.3


def test_api_video_analytics(seeded: Seeded) -> None:
    status, body = get(f"{seeded.url}/api/videos/{A}/analytics")
    assert status == 200
    assert body["stats"]["views"] == 10 and body["stats"]["completion_rate"] == 0.3
    # A's ten views watched 100 %, 95 %, 90 % ... 55 % of the video: the engagement agent's buckets.
    watch = body["watch_time"]
    assert watch["source"] == "histogram" and watch["views"] == [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 1]
    assert watch["labels"][0] == "0-10%" and watch["labels"][-1] == "100%+"
    timeline = body["timeline"]  # the engagement agent's per-video series
    assert timeline is not None and sum(timeline["views"]) == 10 and sum(timeline["likes"]) == 4
    completions = sum(r * v for r, v in zip(timeline["completion_rate"], timeline["views"], strict=True) if v)
    assert completions == pytest.approx(3, abs=0.01)  # the rates are rounded to 4 digits
    assert [w["name"] for w in body["windows"]] == ["lifetime", "long", "short"]
    assert body["windows"][0]["like_rate"] == 0.4
    assert {s["video_id"] for s in body["similar"]} == {B, C}  # what the burst's users watched beside A

    def same_order() -> bool:  # as the client API ranks them, once no event of another test moves them
        ours = get(f"{seeded.url}/api/videos/{A}/analytics")[1]["similar"]
        theirs = get(f"{seeded.url}/videos/{A}/similar")[1]["items"]
        return [s["video_id"] for s in ours] == [s["video_id"] for s in theirs]

    assert wait_for(same_order, timeout=5, interval=0.2)
    assert get(f"{seeded.url}/api/videos/nope-{TAG}/analytics")[0] == 404


def test_api_user_history(seeded: Seeded) -> None:
    hist = get(f"{seeded.url}/api/users/{USERS[0]}/history")[1]
    assert {h["video_id"]: h["caption"] for h in hist["history"]} == {
        A: "Cat meets cucumber",
        B: "Pasta in 8 seconds",
    }
    assert hist["seen"] == 2


def test_api_model_without_a_model(seeded: Seeded) -> None:
    model = get(seeded.url + "/api/model")[1]
    assert model["state"] == "no model trained yet" and model["error"] is None
    assert model["active_version"] is None and model["active"] is None and model["versions"] == []


def test_api_pipeline_counts_and_times_an_event(seeded: Seeded) -> None:
    names = topic_names(seeded.cluster.settings)
    before = get(seeded.url + "/api/pipeline")[1]
    assert before["dependencies"] == {"redis": "ok", "mongo": "ok", "kafka": "ok"}, before["dependencies"]
    topics = {lag["topic"] for lag in before["consumer_lag"]}
    assert names.interactions in topics and not any("changelog" in t for t in topics)
    dead = before["dead_letters"]
    assert dead["topic"] == names.dead_letters and len(dead["recent"]) == min(dead["total"], 5), dead

    # A view of a user and a video of this test's own. The counters are the worker process's: a
    # restarted worker (test_worker_down_...) starts them again from zero.
    views = before["events_processed"].get("view", 0)
    event = {
        "type": "view",
        "user_id": f"dashu{TAG}-pipeline",
        "video_id": f"dash{TAG}-pipeline",
        "watch_time_ms": 1_000,
        "duration_ms": 5_000,
    }
    assert post(seeded.url + "/events", event)[0] == 202

    def counted() -> dict | None:
        body = get(seeded.url + "/api/pipeline")[1]
        return body if body["events_processed"].get("view", 0) > views else None

    after = wait_for(counted, timeout=10, interval=0.2)
    assert after, get(seeded.url + "/api/pipeline")[1]["events_processed"]
    freshness = after["freshness"]  # observed by the history agent as it counts the view
    assert freshness["count"] >= 1 and 0 < freshness["p50_ms"] <= freshness["p99_ms"], freshness


# --- the page -----------------------------------------------------------------------------------
def test_live_page_shows_the_api_figures_and_draws(page: Page, seeded: Seeded) -> None:
    page.open("#/live")
    page.wait_loaded("live")

    def shown_totals() -> dict | None:
        totals = get(seeded.url + OVERVIEW)[1]["totals"]
        return totals if all(_close(page.kpi("#live-kpis", k), totals[k]) for k in LIVE_KPIS) else None

    totals = wait_for(shown_totals, timeout=8, interval=0.3)
    assert totals, get(seeded.url + OVERVIEW)[1]["totals"]
    # The burst is in the window (other tests may have added to it): no figure is an empty one.
    assert totals["views"] >= EXPECTED["views"] and None not in [totals[k] for k in LIVE_KPIS], totals
    rate = page.page.inner_text('#live-kpis [data-kpi="completion_rate"] .value')
    assert _one_decimal(rate, totals["completion_rate"] * 100, "%"), (rate, totals)
    watch = page.page.inner_text('#live-kpis [data-kpi="avg_watch_time_ms"] .value')
    assert _one_decimal(watch, totals["avg_watch_time_ms"] / 1000, " s"), (watch, totals)

    rows = page.page.locator("#trending-table tbody tr")

    def trending_shown() -> list[str] | None:
        ids = [i["video_id"] for i in get(seeded.url + "/trending?k=10")[1]["items"]]
        return ids if rows.evaluate_all("rs => rs.map(r => r.dataset.videoId)") == ids else None

    shown = wait_for(trending_shown, timeout=5)
    assert shown and {A, B, C} <= set(shown), shown
    assert "Cat meets cucumber" in page.page.inner_text("#trending-table")

    for canvas in ("chart-events", "chart-active", "chart-watch", "chart-rates"):
        drawn = page.chart_drawn(canvas)
        assert drawn["hasData"] and drawn["painted"] > 1000, (canvas, drawn)
    page.shot("live")
    assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)


def test_trending_row_opens_video_analytics(page: Page, seeded: Seeded) -> None:
    page.open("#/live")
    page.page.locator(f'#trending-table tbody tr[data-video-id="{A}"]').click()
    page.page.wait_for_function(f"location.hash === '#/video/{A}'")
    page.wait_loaded("video")
    page.page.wait_for_selector("#video-body:not([hidden])")
    assert page.page.inner_text("#video-caption") == "Cat meets cucumber"
    stats = get(f"{seeded.url}/videos/{A}/stats")[1]
    assert page.kpi("#video-kpis", "views") == str(stats["views"])
    assert _close(page.kpi("#video-kpis", "completion_rate"), stats["completion_rate"])
    # A has a timeline (test_api_video_analytics): its chart is drawn, not the empty note.
    assert page.page.is_hidden("#timeline-empty")
    for canvas in ("chart-watchdist", "chart-horizons", "chart-timeline"):
        assert page.chart_drawn(canvas)["hasData"], canvas

    items = page.page.locator("#similar-list li")

    def similar_shown() -> list[str] | None:
        similar = [s["video_id"] for s in get(f"{seeded.url}/videos/{A}/similar")[1]["items"]]
        return similar if items.evaluate_all("ls => ls.map(l => l.dataset.videoId)") == similar else None

    similar = wait_for(similar_shown, timeout=5, interval=0.3)
    assert similar and set(similar) == {B, C}, similar
    page.shot("video")
    assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)

    page.open(f"#/video/nope-{TAG}")
    page.page.wait_for_selector("#video-missing:not([hidden])")
    assert "No video" in page.page.inner_text("#video-missing")
    # The API's 404, which the browser logs: that and nothing else.
    assert page.console_errors and all("404" in e for e in page.console_errors), page.console_errors


def test_user_explorer_shows_the_api_recommendations_live(page: Page, seeded: Seeded) -> None:
    user = USERS[7]  # watched A and C
    page.open("#/users")
    page.page.fill("#user-input", user)
    page.page.press("#user-input", "Enter")
    page.wait_loaded("users")

    def shown_matches_api() -> bool:
        api = [
            i["video_id"] for i in get(f"{seeded.url}/recommendations/{user}?k=20&preview=true")[1]["items"]
        ]
        shown = page.page.locator("#recs-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.videoId)")
        return bool(api) and shown == api

    assert wait_for(shown_matches_api, timeout=8, interval=0.3)
    first = get(f"{seeded.url}/recommendations/{user}?k=20&preview=true")[1]["items"][0]
    assert f"{first['score']:.4f}" in page.page.inner_text("#recs-table tbody tr:first-child")
    history = page.page.locator("#history-table tbody tr")
    assert sorted(history.evaluate_all("rs => rs.map(r => r.dataset.videoId)")) == sorted([A, C])

    # The user acts: the page follows without a reload.
    assert (
        post(
            seeded.url + "/events",
            {"type": "view", "user_id": user, "video_id": B, "watch_time_ms": 8_000, "duration_ms": 8_000},
        )[0]
        == 202
    )
    page.page.wait_for_function(
        "document.querySelectorAll('#history-table tbody tr').length === 3", timeout=8_000
    )
    assert history.first.get_attribute("data-video-id") == B
    assert wait_for(shown_matches_api, timeout=8, interval=0.3)
    assert B not in page.page.locator("#recs-table tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.videoId)"
    )
    page.shot("users")
    assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)


def test_model_tab_without_a_model(page: Page) -> None:
    page.open("#/model")
    page.wait_loaded("model")
    page.page.wait_for_selector("#model-empty:not([hidden])")
    assert "No model trained yet" in page.page.inner_text("#model-empty")
    assert page.page.is_hidden("#model-body")
    page.shot("model-empty")
    assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)


def test_model_tab_shows_registered_versions(page: Page, seeded: Seeded) -> None:
    from recstream.serving.model_store import ModelArtifact, ModelRegistry, new_version

    registry = ModelRegistry(seeded.cluster.settings)
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    try:
        versions = []
        for i, ndcg in enumerate((0.21, 0.24)):
            version = new_version()
            artifact = ModelArtifact(
                version,
                USERS[:2],
                [A, B],
                rng.random((2, 4), dtype=np.float32),
                rng.random((2, 4), dtype=np.float32),
                {"rank": 4},
            )
            registry.register(
                artifact,
                {
                    "created_at": now - (2 - i) * 3_600_000,
                    "status": "candidate",
                    "metrics": {"ndcg@10": ndcg, "recall@10": ndcg * 2},
                    "baseline": {"popularity": {"ndcg@10": 0.1}},
                    "data": {
                        "events": 27,
                        "users": 10,
                        "videos": 3,
                        "min_ts": now - 86_400_000,
                        "max_ts": now - 60_000,
                        "trained_on": "all pairs",
                    },
                    "params": {"rank": 4, "alpha": 5.0},
                    "timings": {"extract": 1.5, "fit": 3.0},
                    "gate": {"passed": True, "reason": "no active model"},
                },
            )
            registry.activate(artifact)
            versions.append(version)
        api = get(seeded.url + "/api/model")[1]
        assert (
            api["active_version"] == versions[1] and [v["version"] for v in api["versions"]] == versions[::-1]
        )
        assert api["active"]["training_s"] == 4.5 and api["versions"][1]["status"] == "retired"

        page.open("#/model")
        page.page.wait_for_selector("#model-body:not([hidden])")
        assert versions[1] in page.page.inner_text("#model-facts")
        rows = page.page.locator("#versions-table tbody tr[data-version]")
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.version)") == versions[::-1]
        assert "0.2400" in page.page.inner_text("#versions-table")
        assert page.chart_drawn("chart-versions")["hasData"] and page.chart_drawn("chart-timings")["hasData"]
        page.shot("model")
        assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)
    finally:  # the other tests see no model
        registry.delete_namespace()
        registry.close()


def test_model_tab_shows_closed_loop_buckets(page: Page, seeded: Seeded) -> None:
    closed_loop = pytest.importorskip("recstream.producers.closed_loop")
    settings = seeded.cluster.settings

    def figures(mean: float) -> dict:
        return {"mean": mean, "ci95": mean / 10}

    run_id = f"dash-{TAG}"
    summary = {
        "run_id": run_id,
        "config": {"users": 20},
        "world": {},
        "strategies": {
            name: {
                "users": 10,
                "impressions": 100,
                "watch_time_ms": figures(w),
                "completion_rate": figures(c),
                "like_rate": figures(c / 5),
                "taste": figures(c * 2),
            }
            for name, w, c in (("hybrid", 6000.0, 0.42), ("random", 2500.0, 0.11))
        },
    }
    try:
        with ThreadPoolExecutor(1) as pool:  # the page's event loop owns this thread
            pool.submit(asyncio.run, closed_loop.save(settings, summary)).result()
        loop = get(seeded.url + "/api/model")[1]["closed_loop"]
        assert loop["run_id"] == run_id
        assert {r["strategy"]: r["completion_rate"]["mean"] for r in loop["strategies"]} == {
            "hybrid": 0.42,
            "random": 0.11,
        }

        page.open("#/model")
        page.page.wait_for_selector("#closed-loop-table")
        shown = page.page.locator("#closed-loop-table tbody tr").evaluate_all(
            "rs => rs.map(r => r.dataset.strategy)"
        )
        assert sorted(shown) == ["hybrid", "random"]
        assert "42.0%" in page.page.inner_text('#closed-loop-table tr[data-strategy="hybrid"]')
        page.shot("closed-loop")
        assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)
    finally:
        with MongoClient(settings.mongo_url) as mongo:
            mongo[settings.mongo_db][closed_loop.COLLECTION].delete_many({"run_id": run_id})


async def _produce_garbage(settings, value: bytes) -> None:  # noqa: ANN001
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic_names(settings).interactions, key=b"dash-garbage", value=value)
    finally:
        await producer.stop()


def test_pipeline_tab_shows_health_lag_and_dead_letters(page: Page, seeded: Seeded) -> None:
    settings = seeded.cluster.settings
    garbage = f"{{not json {TAG}"
    before = get(seeded.url + "/api/pipeline")[1]["dead_letters"]["total"]
    # Playwright's sync API keeps an event loop on this thread: produce from another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _produce_garbage(settings, garbage.encode())).result()

    def letters() -> dict | None:
        dead = get(seeded.url + "/api/pipeline")[1]["dead_letters"]
        return dead if dead["total"] == before + 1 else None

    dead = wait_for(letters, timeout=15)
    assert dead, get(seeded.url + "/api/pipeline")[1]["dead_letters"]
    newest = dead["recent"][0]
    assert (newest["value"], newest["key"]) == (garbage, "dash-garbage")
    assert newest["source_topic"] == topic_names(settings).interactions and "json" in newest["reason"].lower()

    page.open("#/pipeline")
    page.wait_loaded("pipeline")
    page.page.wait_for_selector("#dead-table tbody tr")
    for dep in ("kafka", "redis", "mongo"):
        assert page.page.get_attribute(f'[data-dep="{dep}"]', "data-state") == "ok"
    assert page.kpi("#pipeline-kpis", "dead_letters") == str(before + 1)
    assert garbage in page.page.inner_text("#dead-table tbody tr:first-child")
    assert page.chart_drawn("chart-lag")["painted"] > 1000
    page.shot("pipeline")
    assert not page.console_errors and not page.page_errors, (page.console_errors, page.page_errors)


def test_worker_down_shows_retrying_then_recovers(page: Page, seeded: Seeded) -> None:
    page.open("#/live")
    page.wait_loaded("live")
    page.page.wait_for_selector('#conn-status[data-state="live"]')
    before = page.kpi("#live-kpis", "events_per_s")
    assert before not in ("", None) and float(before) > 0, before  # the burst's rate, to be kept
    worker = seeded.cluster.workers[0]
    worker.stop()
    try:
        page.page.wait_for_selector('#conn-status[data-state="down"]', timeout=10_000)
        status = page.page.inner_text("#conn-status")
        assert "unreachable" in status and "retrying" in status
        assert (
            page.page.is_visible("#conn-banner")
            and "retrying" in page.page.inner_text("#conn-banner").lower()
        )
        # Not a blank page: the last figures stay, dimmed.
        assert page.kpi("#live-kpis", "events_per_s") == before and page.page.is_visible("#chart-events")
        page.shot("worker-down")
    finally:
        worker.start()
        seeded.cluster.wait_settled()  # the tests after this one find every partition owned again
    page.page.wait_for_selector('#conn-status[data-state="live"]', timeout=15_000)
    assert page.page.is_hidden("#conn-banner")
    totals = get(seeded.url + OVERVIEW)[1]["totals"]
    assert wait_for(lambda: _close(page.kpi("#live-kpis", "active_users"), totals["active_users"]), timeout=5)
    assert not page.page_errors, page.page_errors
    # While the worker was down the browser logged the refused connections; nothing else.
    assert page.console_errors and all(
        "ERR_CONNECTION_REFUSED" in e or "Failed to load resource" in e for e in page.console_errors
    ), page.console_errors
