"""The web role (`recstream web`): the API without agents, from its in-process serving state.

What reaches it and how fast (a new neighbour list, a new trending video, a new model, each within the
stated bound with a margin for a noisy box), and that it keeps answering from its last state while the
worker is stopped, saying in /health how old that state is.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np

from recstream.devtools.devcluster import Cluster, get, post, wait_for
from recstream.serving.model_store import ModelArtifact, ModelRegistry, new_version
from recstream.serving.stores import Stores

from .conftest import _redis_dbs

BOUND_S = 2.0  # stated staleness of neighbours, trending and models in a web process
MARGIN_S = 3.0


def _items(url: str, user: str, **query: str) -> list[dict]:
    params = "&".join(f"{k}={v}" for k, v in {"k": "20", **query}.items())
    return get(f"{url}/recommendations/{user}?preview=true&{params}")[1]["items"]


def _write(cluster: Cluster, write) -> None:  # noqa: ANN001 - async (stores) -> None
    async def run() -> None:
        stores = Stores(cluster.settings)
        try:
            await write(stores)
        finally:
            await stores.close()

    asyncio.run(run())


def _timed(check, bound: float) -> None:  # noqa: ANN001
    assert wait_for(check, timeout=bound + MARGIN_S, interval=0.05), (
        f"not visible within {bound + MARGIN_S} s"
    )


def test_new_neighbours_trending_and_models_reach_a_web_process_within_the_bound(cluster: Cluster) -> None:
    web = cluster.webs[0].url
    tag = uuid.uuid4().hex[:6]
    src, dst, hot, user = f"src-{tag}", f"dst-{tag}", f"hot-{tag}", f"u-{tag}"
    catalog = {
        v: {"video_id": v, "creator_id": f"c-{v}", "duration_ms": 10_000, "created_at": 1_000_000_000_000}
        for v in (src, dst, hot)
    }
    _write(cluster, lambda s: s.write_catalog(catalog))
    assert post(cluster.url + "/events", {"type": "like", "user_id": user, "video_id": src})[0] == 202
    assert wait_for(
        lambda: (
            get(f"{cluster.url}/recommendations/{user}?preview=true")[0] == 200
            and src not in {i["video_id"] for i in _items(web, user, k="200")}
        ),
        timeout=10,
    )

    # A neighbour list the covisit agent would publish.
    _write(cluster, lambda s: s.write_neighbours({src: [[dst, 1.0]]}))
    _timed(
        lambda: any(
            i["video_id"] == dst and f"because you watched {src}" in i["reasons"] for i in _items(web, user)
        ),
        BOUND_S,
    )

    # A video jumping to the top of trending (the engagement agent's rank: log2 of the decayed sum).
    rank = time.time() / cluster.settings.trending_half_life_s + 50  # 2^50 times a fresh unit of weight
    _write(cluster, lambda s: s.write_video_stats({}, {hot: rank}))
    _timed(lambda: (_items(web, user, strategy="trending") or [{}])[0].get("video_id") == hot, BOUND_S)

    # A new model version activated by training.
    registry = ModelRegistry(cluster.settings)
    rng = np.random.default_rng(7)
    artifact = ModelArtifact(
        version=new_version(),
        user_ids=[user],
        item_ids=[src, dst, hot],
        user_factors=rng.random((1, 8), dtype=np.float32),
        item_factors=rng.random((3, 8), dtype=np.float32),
        meta={"reg_param": 0.1, "alpha": 1.0, "data_until_ms": 0},
    )
    registry.activate(artifact)
    _timed(
        lambda: get(f"{web}/recommendations/{user}?preview=true")[1]["model_version"] == artifact.version,
        BOUND_S,
    )


def test_web_role_answers_from_its_last_state_while_the_worker_is_stopped(services, tmp_path) -> None:  # noqa: ANN001
    cluster = Cluster(services, tmp_path, redis_db=next(_redis_dbs))
    try:
        worker = cluster.start_worker()
        cluster.wait_settled()
        web = cluster.start_web().url
        a, b, user = "wa", "wb", "wu"
        post(
            worker.url + "/videos",
            {"videos": [{"video_id": v, "creator_id": f"c{v}", "duration_ms": 10_000} for v in (a, b)]},
        )
        for u in ("x1", "x2", "x3"):  # others watch a then b: b becomes a's neighbour
            post(
                worker.url + "/events",
                {
                    "events": [
                        {
                            "type": "view",
                            "user_id": u,
                            "video_id": v,
                            "watch_time_ms": 10_000,
                            "duration_ms": 10_000,
                        }
                        for v in (a, b)
                    ]
                },
            )
        post(worker.url + "/events", {"type": "like", "user_id": user, "video_id": a})
        # Not just b (a cold user gets it too, as trending): b because of a, and a gone: the like is in.
        assert wait_for(
            lambda: any(
                i["video_id"] == b and f"because you watched {a}" in i["reasons"] for i in _items(web, user)
            ),
            timeout=15,
        )

        worker.stop()
        status, body = get(f"{web}/recommendations/{user}?preview=true")
        assert status == 200 and b in {i["video_id"] for i in body["items"]}
        assert a not in {i["video_id"] for i in body["items"]}
        status, health = get(web + "/health")
        assert status == 200 and health["role"] == "web" and health["serving_state"]["loaded"]
        ages = health["serving_state"]["age_s"]
        assert set(ages) == {"catalog", "neighbours", "trending", "fresh", "model"}
        assert all(age is not None and 0 <= age < 30 for age in ages.values()), ages
        metrics = get(web + "/metrics")[1].get("text", "")
        assert 'recstream_serving_state_age_seconds{part="neighbours"}' in metrics
    finally:
        cluster.stop()


def test_two_web_processes_share_the_port_and_report_one_set_of_metrics(cluster: Cluster) -> None:
    web = cluster.start_web(processes=2).url

    def served() -> float:
        for line in get(web + "/metrics")[1].get("text", "").splitlines():
            if line.startswith('recstream_request_latency_seconds_count{route="/recommendations"}'):
                return float(line.split()[-1])
        return 0.0

    before = served()
    pids: set[int] = set()

    def both_answered() -> bool:  # a new connection each time; the second process may still be binding
        pids.add(get(web + "/health")[1]["pid"])
        return len(pids) == 2

    assert wait_for(both_answered, timeout=20), pids  # the kernel spreads connections over both processes
    for n in range(30):
        assert get(f"{web}/recommendations/metrics-user-{n}")[0] == 200
    assert served() - before == 30  # counted once each, whichever process answered the scrape
