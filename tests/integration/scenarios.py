"""End-to-end scenarios through the real pipeline (HTTP -> Kafka -> Faust agents -> tables -> HTTP).

Each takes a running cluster and uses fresh ids, so the same scenarios run against one worker and
against two workers sharing the partitions.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from recstream.kafka.topics import topic_names
from recstream.redis_layout import history_key, seen_key

from .conftest import Cluster, get, post, request, wait_for


def _ids(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}{tag}-{i}" for i in range(n)]


def _urls(cluster: Cluster) -> list[str]:
    """Writes go to the first, reads to the last: the web role when the cluster has one."""
    return cluster.urls


def stats_are_exact(cluster: Cluster) -> None:
    (video, other), urls = _ids("v", 2), _urls(cluster)
    assert (
        post(
            urls[0] + "/videos",
            {
                "videos": [
                    {"video_id": video, "creator_id": "c-stats", "duration_ms": 10_000, "category": "test"},
                    {"video_id": other, "creator_id": "c-stats", "duration_ms": 10_000},
                ]
            },
        )[0]
        == 202
    )
    users = _ids("u", 10)
    events = []
    for i, user in enumerate(users):
        # 10 views: watch 10 s, 9.5 s, 9 s ... 5.5 s of a 10 s video -> completions (>= 9 s) are 3.
        events.append(
            {
                "type": "view",
                "user_id": user,
                "video_id": video,
                "watch_time_ms": 10_000 - 500 * i,
                "duration_ms": 10_000,
            }
        )
    events += [
        {"type": "like", "user_id": users[0], "video_id": video},
        {"type": "like", "user_id": users[1], "video_id": video},
        {"type": "share", "user_id": users[2], "video_id": video},
        {"type": "comment", "user_id": users[3], "video_id": video},
        {"type": "skip", "user_id": users[4], "video_id": video},
        {
            "type": "view",
            "user_id": users[5],
            "video_id": other,
            "watch_time_ms": 1_000,
            "duration_ms": 10_000,
        },
    ]
    status, body = post(urls[-1] + "/events", {"events": events})
    assert (status, body) == (202, {"accepted": 16})

    def settled():
        for url in urls:  # every worker gives the same answer
            s = get(f"{url}/videos/{video}/stats")[1]
            if s.get("views") != 10 or s.get("comments") != 1:
                return None
        return s

    stats = wait_for(settled, timeout=15)
    assert stats, get(f"{urls[0]}/videos/{video}/stats")
    assert stats["watch_time_ms"] == sum(10_000 - 500 * i for i in range(10))
    assert stats["avg_watch_time_ms"] == 7750.0
    assert stats["completion_rate"] == 0.3
    assert (stats["likes"], stats["shares"], stats["comments"], stats["skips"]) == (2, 1, 1, 1)
    assert stats["window_short"]["views"] == 10 and stats["window_long"]["views"] == 10
    assert get(f"{urls[0]}/videos/never-seen-{uuid.uuid4().hex}/stats")[0] == 404


def burst_tops_trending(cluster: Cluster) -> None:
    # Big enough to top what the other scenarios sharing this cluster leave in trending (the largest,
    # a video with ~90 likes, scores ~180, about what 60 views and 20 shares give), in any order.
    FANS = 150  # noqa: N806
    (hot,), urls = _ids("hot", 1), _urls(cluster)
    post(urls[0] + "/videos", {"video_id": hot, "creator_id": "c-hot", "duration_ms": 8_000})
    events = [
        {"type": "view", "user_id": u, "video_id": hot, "watch_time_ms": 8_000, "duration_ms": 8_000}
        for u in _ids("fan", FANS)
    ]
    events += [{"type": "share", "user_id": e["user_id"], "video_id": hot} for e in events[: FANS // 3]]
    assert post(urls[0] + "/events", {"events": events})[0] == 202

    def first_is_hot_with_all_views():
        first = (get(urls[-1] + "/trending?k=5")[1]["items"] or [{}])[0]
        return first.get("video_id") == hot and first.get("views") == FANS and first

    first = wait_for(first_is_hot_with_all_views, timeout=15)
    assert first, get(urls[-1] + "/trending?k=5")
    assert first["completion_rate"] == 1.0 and first["likes"] == 0


def next_video_follows_within_a_second(cluster: Cluster) -> None:
    (a, b, c), urls = _ids("seq", 3), _urls(cluster)
    post(
        urls[0] + "/videos",
        {"videos": [{"video_id": v, "creator_id": f"cr-{v}", "duration_ms": 10_000} for v in (a, b, c)]},
    )
    events = []
    for u in _ids("crowd", 30):
        events.append(
            {"type": "view", "user_id": u, "video_id": a, "watch_time_ms": 10_000, "duration_ms": 10_000}
        )
        events.append(
            {"type": "view", "user_id": u, "video_id": b, "watch_time_ms": 10_000, "duration_ms": 10_000}
        )
    assert post(urls[0] + "/events", {"events": events})[0] == 202
    assert wait_for(
        lambda: any(i["video_id"] == b for i in get(f"{urls[-1]}/videos/{a}/similar")[1]["items"]), timeout=15
    )

    (newcomer,) = _ids("new", 1)
    # Cold start: a list (trending, fresh), not an error and not empty.
    before = get(f"{urls[0]}/recommendations/{newcomer}?preview=true")
    assert before[0] == 200 and before[1]["items"], before
    started = time.monotonic()
    assert (
        post(
            urls[0] + "/events",
            {
                "type": "view",
                "user_id": newcomer,
                "video_id": a,
                "watch_time_ms": 10_000,
                "duration_ms": 10_000,
            },
        )[0]
        == 202
    )

    def b_first():
        items = get(f"{urls[-1]}/recommendations/{newcomer}?preview=true&k=10")[1]["items"]
        return items and items[0]["video_id"] == b and items[0]

    first = wait_for(b_first, timeout=5, interval=0.02)
    elapsed = time.monotonic() - started
    assert first, get(f"{urls[-1]}/recommendations/{newcomer}?preview=true&k=10")
    assert f"because you watched {a}" in first["reasons"]
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    # Never a video the user already watched, however often we ask.
    for url in urls:
        items = get(f"{url}/recommendations/{newcomer}?preview=true&k=50")[1]["items"]
        assert a not in {i["video_id"] for i in items}
    post(
        urls[0] + "/events",
        {"type": "view", "user_id": newcomer, "video_id": b, "watch_time_ms": 10_000, "duration_ms": 10_000},
    )
    assert wait_for(
        lambda: (
            b
            not in {
                i["video_id"]
                for i in get(f"{urls[-1]}/recommendations/{newcomer}?preview=true&k=50")[1]["items"]
            }
        )
    )


async def _end_offsets(s, topic: str) -> dict[int, int]:  # noqa: ANN001
    """partition -> end offset of a topic made with `interactions_partitions` partitions. (Asked by
    number: a consumer without a subscription has no metadata to list them, and an empty answer would
    make every "nothing was produced" comparison pass.)"""
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(s.interactions_partitions)]
        return {tp.partition: off for tp, off in (await consumer.end_offsets(parts)).items()}
    finally:
        await consumer.stop()


def malformed_request_produces_nothing(cluster: Cluster) -> None:
    url, s = cluster.url, cluster.settings
    topic = topic_names(s).interactions
    before = asyncio.run(_end_offsets(s, topic))
    good = {"type": "like", "user_id": "u-ok", "video_id": "v-ok"}
    status, body = post(
        url + "/events",
        {"events": [good, good, {"type": "view", "user_id": "u", "video_id": "v", "watch_time_ms": -5}]},
    )
    assert status == 422
    assert body["details"][0]["index"] == 2 and body["details"][0]["field"] == "watch_time_ms"
    status, body = post(
        url + "/events", {"events": [good, {"type": "teleport", "user_id": "u", "video_id": "v"}]}
    )
    assert status == 422 and body["details"][0] == {
        "index": 1,
        "field": "type",
        "message": body["details"][0]["message"],
    }
    assert post(url + "/events", b"{not json")[0] == 400
    assert post(url + "/events", [1, 2])[0] == 422
    assert asyncio.run(_end_offsets(s, topic)) == before


async def _write_raw_and_read_dead_letter(s, garbage: bytes) -> dict:  # noqa: ANN001
    names = topic_names(s)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(names.interactions, key=b"garbage-user", value=garbage)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        names.dead_letters, bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    letter = json.loads(m.value)
                    if letter["value"] == garbage.decode(errors="replace"):
                        return letter
        return {}
    finally:
        await consumer.stop()


def garbage_goes_to_dead_letters(cluster: Cluster) -> None:
    garbage = f"}}garbage {uuid.uuid4().hex}".encode()
    letter = asyncio.run(_write_raw_and_read_dead_letter(cluster.settings, garbage))
    assert letter, "no dead letter arrived"
    assert letter["source_topic"] == topic_names(cluster.settings).interactions
    assert "json" in letter["reason"].lower()
    # The worker keeps going: a good event after the garbage is still processed.
    (video,) = _ids("after", 1)
    post(cluster.url + "/events", {"type": "like", "user_id": "garbage-user", "video_id": video})
    assert wait_for(lambda: get(f"{cluster.url}/videos/{video}/stats")[1].get("likes") == 1, timeout=10)


def strategies_are_selectable(cluster: Cluster) -> None:
    url = cluster.url
    catalog = _ids("strat", 6)
    video = catalog[0]
    post(
        url + "/videos",
        {"videos": [{"video_id": v, "creator_id": f"c-{v}", "duration_ms": 5_000} for v in catalog]},
    )
    post(
        url + "/events",
        {
            "type": "view",
            "user_id": "strat-fan",
            "video_id": video,
            "watch_time_ms": 5_000,
            "duration_ms": 5_000,
        },
    )
    assert wait_for(lambda: get(f"{url}/videos/{video}/stats")[1].get("views") == 1)
    default = get(f"{url}/recommendations/someone")[1]
    assert default["strategy"] == "hybrid"  # one bucket unless RECSTREAM_STRATEGIES says otherwise
    # Serving reads its in-process state, at most serving_refresh_interval_s behind Redis.
    trending = wait_for(
        lambda: (
            (r := get(f"{url}/recommendations/someone?preview=true&strategy=trending&k=50")[1])["items"] and r
        ),
        timeout=5,
    )
    assert trending and trending["strategy"] == "trending" and trending["items"]
    assert all(i["reasons"] == ["trending"] for i in trending["items"])
    rnd = get(f"{url}/recommendations/someone?strategy=random&k=5")[1]
    assert rnd["strategy"] == "random" and len(rnd["items"]) == 5
    assert get(f"{url}/recommendations/someone?strategy=psychic")[0] == 422


def _refused(url: str) -> dict[str, float]:
    """recstream_http_refused_total by reason, summed over routes, from a process's /metrics."""
    text = request("GET", url + "/metrics")[1]["text"]
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("recstream_http_refused_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0) + float(line.rsplit(" ", 1)[1])
    return out


def bad_bodies_are_refused_and_counted(cluster: Cluster) -> None:
    """Every refusal is a 4xx that names its cause (and the limit when there is one), is counted in
    /metrics by reason, and produces nothing: on the worker and on the web role alike."""
    s = cluster.settings
    topic = topic_names(s).interactions
    before = asyncio.run(_end_offsets(s, topic))
    good = {"type": "like", "user_id": "u-ok", "video_id": "v-ok"}
    for url in dict.fromkeys([cluster.url, cluster.urls[-1]]):
        counted = _refused(url)
        not_utf8 = b'{"type": "like", "video_id": "v", "user_id": "' + bytes([0xFF, 0xFE]) + b'"}'
        assert request("POST", url + "/events", not_utf8)[0] == 400
        assert (
            request("POST", url + "/events", b"[" * 5000 + b"]" * 5000)[0] == 400
        )  # nested past orjson's 1,024
        limit = s.max_body_bytes
        status, body = request("POST", url + "/events", b'{"events": [' + b" " * limit + b"]}")
        assert status == 413 and f"{limit:,}" in body["error"] and body["limit_bytes"] == limit
        status, body = post(url + "/events", {"events": [good] * 10_001})
        assert status == 413 and "10,000" in body["error"]
        status, body = post(url + "/videos", {"videos": [{"video_id": "v", "creator_id": "c"}] * 1_001})
        assert status == 413 and "1,000" in body["error"]
        day_ahead = int(time.time() * 1000) + 86_400_000
        status, body = post(url + "/events", {"events": [good, {**good, "ts": day_ahead}]})
        assert status == 422 and body["details"][0]["index"] == 1 and body["details"][0]["field"] == "ts"
        assert "ahead" in body["details"][0]["message"]
        status, body = post(
            url + "/videos", {"video_id": "v-late", "creator_id": "c", "created_at": day_ahead}
        )
        assert status == 422 and body["details"][0]["field"] == "created_at"
        for field, bad in (("user_id", "$where"), ("video_id", "a.b"), ("user_id", "x" * 129)):
            status, body = post(url + "/events", {**good, field: bad})
            assert status == 422 and body["details"][0]["field"] == field, (field, bad, body)
        status, body = post(url + "/events", {**good, "colour": "red"})  # unknown fields are refused
        assert status == 422 and body["details"][0]["field"] == "colour"
        assert post(url + "/events", {**good, "watch_time_ms": 10**12})[0] == 422
        # Streamed in chunks without a length, the limit holds as the body arrives.
        chunks = (b'{"events": [' if i == 0 else b" " * 65_536 for i in range(limit // 65_536 + 2))
        streamed = urllib.request.Request(
            url + "/events",
            data=chunks,
            method="POST",
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        )
        try:
            urllib.request.urlopen(streamed, timeout=30)
            raise AssertionError("a streamed body over the limit was accepted")
        except urllib.error.HTTPError as err:
            assert err.code == 413
        except (ConnectionError, urllib.error.URLError):
            pass  # the server answered 413 and closed while the rest was still being sent: counted below
        now = _refused(url)
        gained = {k: v - counted.get(k, 0) for k, v in now.items()}
        # body_too_large: the one with a length and the streamed one (whichever way the client saw it).
        assert gained.get("malformed_json") == 2 and gained.get("body_too_large") == 2, gained
        assert gained.get("too_many_items") == 2 and gained.get("validation") == 7, gained
    assert asyncio.run(_end_offsets(s, topic)) == before
    # The batch limit binds before the body limit: 10,000 events of the longest ids allowed (~3 MB,
    # arriving in many reads) are accepted. Skips of one video by one user: nothing trends, two keys.
    longest = {"type": "skip", "user_id": "u" * 128, "video_id": "v" * 128, "ts": int(time.time() * 1000)}
    body = json.dumps({"events": [longest] * 10_000}).encode()
    assert len(body) > 2_800_000
    for url in dict.fromkeys([cluster.url, cluster.urls[-1]]):
        assert request("POST", url + "/events", body, timeout=60) == (202, {"accepted": 10_000})


async def _write_raw(s, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None = None) -> None:  # noqa: ANN001
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=value, timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


async def _dead_letters_from(s, topics: set[str], marker: str, timeout: float = 20) -> dict[str, dict]:  # noqa: ANN001
    """The dead letters whose value contains `marker`, by source topic, until one came from each topic."""
    consumer = AIOKafkaConsumer(
        topic_names(s).dead_letters, bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, dict] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(found) != topics:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    letter = json.loads(m.value)
                    if marker in letter["value"]:
                        found[letter["source_topic"]] = letter
        return found
    finally:
        await consumer.stop()


def poison_on_every_topic_is_dead_lettered(cluster: Cluster) -> None:
    """Garbage written straight to each topic an agent reads is dead-lettered with the reason, and every
    agent goes on; an event dated a day ahead written straight to the log is applied at its append time
    plus the allowed skew, so it cannot lead trending."""
    s = cluster.settings
    names = topic_names(s)
    marker = uuid.uuid4().hex
    poison = {
        names.interactions: f'{{"type": "view", "user_id": "{marker}"'.encode(),  # cut short
        names.videos: f'{{"video_id": "{marker}", "creator_id": 7}}'.encode(),  # a creator must be a string
        names.video_events: f'[["{marker}", 0, "not an offset", "view", 1, null, null]]'.encode(),
        names.covisit: f'{{"pairs": "{marker}"}}'.encode(),
        names.impressions: f'{{"user_id": "{marker}", "videos": "not a list"}}'.encode(),
    }
    for topic, value in poison.items():
        asyncio.run(_write_raw(s, topic, marker.encode(), value))
    letters = asyncio.run(_dead_letters_from(s, set(poison), marker))
    assert set(letters) == set(poison), f"dead letters came from {sorted(letters)} only"
    assert all(letter["reason"] for letter in letters.values())
    # Every agent goes on: two new videos pass through the catalog, one user's views of them through
    # history and engagement, and the pair they make (earlier -> later) through co-visitation.
    a, b = _ids("after-poison", 2)
    post(cluster.url + "/videos", {"videos": [{"video_id": v, "creator_id": "c-poison"} for v in (a, b)]})
    user = f"u-{marker[:8]}"
    for v in (a, b):
        post(
            cluster.url + "/events",
            {"type": "view", "user_id": user, "video_id": v, "watch_time_ms": 5000, "duration_ms": 5000},
        )
    assert wait_for(lambda: get(f"{cluster.url}/videos/{b}/stats")[1].get("views") == 1, timeout=15)
    assert wait_for(
        lambda: any(i["video_id"] == b for i in get(f"{cluster.url}/videos/{a}/similar")[1].get("items", [])),
        timeout=15,
    )
    # A like dated a day ahead, straight to the log: counted, but at most as strong as one made now.
    (future, present) = _ids("ahead", 2)
    now = int(time.time() * 1000)
    for video, ts in ((future, now + 86_400_000), (present, now)):
        event = {"type": "like", "user_id": f"u-{video}", "video_id": video, "ts": ts}
        asyncio.run(_write_raw(s, names.interactions, event["user_id"].encode(), json.dumps(event).encode()))

    def scores() -> dict[str, float]:
        items = get(f"{cluster.url}/trending?k=500")[1]["items"]
        return {i["video_id"]: i["score"] for i in items if i["video_id"] in (future, present)}

    got = wait_for(lambda: len(r := scores()) == 2 and r, timeout=30)
    assert got, "the two likes did not both reach trending"
    skew_boost = 2 ** (s.max_future_skew_s / s.trending_half_life_s)
    assert got[future] <= got[present] * skew_boost * 1.01, got


ALL = [
    strategies_are_selectable,
    stats_are_exact,
    burst_tops_trending,
    next_video_follows_within_a_second,
    malformed_request_produces_nothing,
    garbage_goes_to_dead_letters,
]


def mongo_indexes_are_ensured_at_start(cluster: Cluster) -> None:
    import pymongo

    db = pymongo.MongoClient(cluster.settings.mongo_url)[cluster.settings.mongo_db]

    def indexed() -> dict[str, set[str]]:
        # By fields (nx-27017 lists every direction as 1).
        return {
            c: {",".join(dict(i["key"])) for i in db[c].list_indexes()}
            for c in ("videos", "video_stats", "models", "user_profiles", "closed_loop")
        }

    want = {
        "videos": {"creator_id", "created_at"},
        "video_stats": {"views"},
        "models": {"namespace,created_at"},
        "user_profiles": {"updated_ms"},
        "closed_loop": {"created_at"},
    }

    def complete() -> bool:
        got = indexed()
        return all(want[c] <= got[c] for c in want)

    assert wait_for(complete, timeout=15), f"indexes: {indexed()}"


def _call(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one request with the given headers."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), dict(err.headers)


def writes_need_the_key_and_are_rate_limited(cluster: Cluster) -> None:
    """A web role with keys: writes need the write key (401 without, 403 with another), JSON only (415),
    public reads stay open, and one client over its write rate gets 429 with Retry-After."""
    keys = {
        "RECSTREAM_WRITE_API_KEY": "w-secret-4e1f",
        "RECSTREAM_READ_API_KEY": "r-secret-9b2c",
        "RECSTREAM_WRITE_RATE_LIMIT_PER_S": "50",
        "RECSTREAM_WRITE_RATE_LIMIT_BURST": "100",
    }
    web = cluster.start_web(env=keys)
    try:
        url, json_type = web.url, {"Content-Type": "application/json"}
        body = json.dumps({"type": "like", "user_id": "acc-u", "video_id": "acc-v"}).encode()
        status, answer, headers = _call("POST", url + "/events", body, json_type)
        assert status == 401 and "API key" in answer["error"] and headers.get("WWW-Authenticate") == "Bearer"
        assert _call("POST", url + "/events", body, {**json_type, "X-API-Key": "guess"})[0] == 403
        assert (
            _call("POST", url + "/events", body, {**json_type, "X-API-Key": keys["RECSTREAM_READ_API_KEY"]})[
                0
            ]
            == 403
        )
        writer = {**json_type, "Authorization": f"Bearer {keys['RECSTREAM_WRITE_API_KEY']}"}
        assert _call("POST", url + "/events", body, writer)[0] == 202
        status, answer, _ = _call("POST", url + "/events", body, {**writer, "Content-Type": "text/plain"})
        assert status == 415 and "application/json" in answer["error"]
        assert _call("GET", url + "/trending?k=3")[0] == 200  # public reads: open by default
        batch = json.dumps({"events": [json.loads(body)] * 90}).encode()  # 1 + 90 of the 100 burst
        assert _call("POST", url + "/events", batch, writer)[0] == 202
        status, answer, headers = _call("POST", url + "/events", batch, writer)
        assert status == 429 and int(headers["Retry-After"]) >= 1, (status, answer)
        text = request("GET", url + "/metrics")[1]["text"]
        for reason in ("no_api_key", "wrong_api_key", "content_type", "rate_limited"):
            assert f'reason="{reason}"' in text, reason
    finally:
        web.stop()
        cluster.webs.remove(web)
    assert all(
        k not in web.log.read_text()
        for k in (keys["RECSTREAM_WRITE_API_KEY"], keys["RECSTREAM_READ_API_KEY"])
    )


async def _tombstoned(s, key: str) -> bool:  # noqa: ANN001
    """Whether the videos topic's newest record for `key` is a tombstone (value None)."""
    topic = topic_names(s).videos
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(s.interactions_partitions)]  # as the topic is made
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends, newest = await consumer.end_offsets(parts), None
        deadline = time.monotonic() + 20

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind() and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    if m.key == key.encode():
                        newest = m
        return newest is not None and newest.value is None
    finally:
        await consumer.stop()


def videos_shown_too_often_are_not_shown_again(cluster: Cluster) -> None:
    """Every answer goes to the impressions topic; a video shown `max_unengaged_impressions` (3) times
    to a user who never engaged with it is left out of their next answers, and only theirs."""
    s = cluster.settings
    videos = _ids("v-shown", 40)
    post(cluster.url + "/videos", {"videos": [{"video_id": v, "creator_id": f"c-{v}"} for v in videos]})
    # A crowd makes them trending, so a newcomer's answer is the same pool every time.
    crowd = _ids("u-crowd", 3)
    post(
        cluster.url + "/events",
        {
            "events": [
                {"type": "view", "user_id": u, "video_id": v, "watch_time_ms": 9000, "duration_ms": 10_000}
                for u in crowd
                for v in videos
            ]
        },
    )
    user, bystander = _ids("u-shown", 2)
    url = cluster.urls[-1]

    # Every answer below must come from the same pool: wait until serving has the crowd's videos in it.
    def pool() -> set[str]:
        return {
            i["video_id"]
            for i in get(f"{url}/recommendations/{bystander}?preview=true&strategy=trending&k=200")[1][
                "items"
            ]
        }

    assert wait_for(lambda: set(videos) <= pool(), timeout=30)

    tally: dict[str, int] = {}
    shown: list[list[str]] = []  # the user's answers with videos in them: each one is an impression

    def answer(who: str) -> list[str]:
        items = [i["video_id"] for i in get(f"{url}/recommendations/{who}?k=5&strategy=trending")[1]["items"]]
        if who == user:
            for v in items:
                tally[v] = tally.get(v, 0) + 1
            if items:
                shown.append(items)
        return items

    assert wait_for(lambda: len(answer(user)) == 5, timeout=20)
    for _ in range(3):
        answer(user)
    first = {v for v, n in tally.items() if n >= 3}
    assert len(first) >= 3, tally
    r = redis.Redis.from_url(s.redis_url)
    assert wait_for(lambda: first <= set(json.loads(r.get(f"shown:{user}") or b"[]")), timeout=20), (
        tally,
        r.get(f"shown:{user}"),
    )
    later = answer(user)
    assert len(later) == 5 and not set(later) & first, (first, later)  # the rest of the pool instead
    assert first & set(answer(bystander))  # only the user who was shown them too often
    history = get(f"{cluster.url}/api/users/{user}/history")[1]  # the dashboard: on the worker
    assert first <= set(history.get("overexposed", [])), history

    # An exact count: the impressions topic holds one message per answer with the videos in order.
    def published() -> list[dict]:
        """The user's impressions messages, once there are as many as answers (they are queued, not
        awaited, by serving)."""
        records = asyncio.run(_records(s, topic_names(s).impressions, user.encode()))
        return [json.loads(v) for _k, v in records] if len(records) >= len(shown) else []

    messages = wait_for(published, timeout=20)
    assert [m["videos"] for m in messages] == shown, (messages, shown)
    assert {m["strategy"] for m in messages} == {"trending"}, messages


async def _records(s, topic: str, key: bytes) -> list[tuple[bytes, bytes]]:  # noqa: ANN001
    """Every record of one key on a topic keyed like the interactions (its partition, from the start)."""
    from recstream.kafka.batches import partition_for

    tp = TopicPartition(topic, partition_for(key, s.interactions_partitions))
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        position = 0
        while position < end and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(tp, timeout_ms=500)).values():
                out += [(m.key, m.value) for m in msgs if m.key == key and m.offset < end]
                position = msgs[-1].offset + 1 if msgs else position
        return out
    finally:
        await consumer.stop()


def deletions_take_videos_down_and_erase_users(cluster: Cluster) -> None:
    """DELETE /videos/{id}: never recommended or trending again, on every process, within seconds (and
    its metadata tombstoned); DELETE /users/{id}: history and profile gone from Redis, MongoDB, tables."""
    import pymongo

    s, urls = cluster.settings, cluster.urls
    gone, kept = _ids("takedown", 2)
    fans = _ids("tdfan", 4)
    post(urls[0] + "/videos", {"videos": [{"video_id": v, "creator_id": f"c-{v}"} for v in (gone, kept)]})
    post(
        urls[0] + "/events",
        {"events": [{"type": "share", "user_id": u, "video_id": v} for u in fans for v in (gone, kept)]},
    )

    def served(url: str) -> set[str]:
        trending = {i["video_id"] for i in get(url + "/trending?k=500")[1]["items"]}
        recs = {
            i["video_id"]
            for i in get(url + "/recommendations/td-newcomer?preview=true&strategy=trending&k=500")[1][
                "items"
            ]
        }
        return trending & recs

    assert wait_for(lambda: all({gone, kept} <= served(u) for u in urls), timeout=15), [
        served(u) for u in urls
    ]
    assert request("DELETE", urls[-1] + f"/videos/{gone}")[0] == 202
    assert wait_for(lambda: all(gone not in (r := served(u)) and kept in r for u in urls), timeout=10)
    post(urls[0] + "/events", {"type": "like", "user_id": "td-late", "video_id": gone})  # still counted ...
    assert wait_for(lambda: get(f"{urls[0]}/videos/{gone}/stats")[1].get("likes") == 1, timeout=10)
    time.sleep(2 * s.serving_refresh_interval_s + s.serving_write_interval_s)
    assert all(gone not in (r := served(u)) and kept in r for u in urls)  # ... but never served again
    assert asyncio.run(_tombstoned(s, gone))
    db = pymongo.MongoClient(s.mongo_url)[s.mongo_db]
    assert wait_for(
        lambda: db.videos.find_one({"_id": gone}) is None and db.videos.find_one({"_id": kept}), timeout=10
    )

    user = fans[0]
    client = redis.Redis.from_url(s.redis_url)
    assert wait_for(lambda: db.user_profiles.find_one({"_id": user}), timeout=10)
    assert client.exists(history_key(user)) == 1  # (a seen filter exists only once videos leave the history)
    assert request("DELETE", urls[-1] + f"/users/{user}")[0] == 202
    assert wait_for(lambda: client.exists(history_key(user), seen_key(user)) == 0, timeout=10)
    assert wait_for(lambda: db.user_profiles.find_one({"_id": user}) is None, timeout=10)
    assert get(f"{urls[0]}/api/users/{user}/history")[1]["history"] == []
    assert client.exists(history_key(fans[1])) == 1  # nobody else
    status, body = request("DELETE", urls[-1] + "/users/not$an$id")
    assert status == 422 and body["details"][0]["field"] == "user_id"


ONE_WORKER = [
    videos_shown_too_often_are_not_shown_again,
    deletions_take_videos_down_and_erase_users,
    writes_need_the_key_and_are_rate_limited,
    bad_bodies_are_refused_and_counted,
    poison_on_every_topic_is_dead_lettered,
    mongo_indexes_are_ensured_at_start,
]
"""Input handling is the same however many workers share the partitions: run once."""
