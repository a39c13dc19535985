import pytest
from pydantic import ValidationError

from recstream.records import (
    FUTURE_SKEW_CONTEXT,
    Interaction,
    Video,
    bound_ts,
    describe_errors,
    encode,
    now_ms,
)


def test_one_schema_round_trips_http_json_to_kafka_bytes() -> None:
    # POST /events validates with Interaction; agents parse Kafka bytes with the same model.
    http_body = {
        "type": "view",
        "user_id": "u1",
        "video_id": "v1",
        "watch_time_ms": 1200,
        "duration_ms": 3000,
        "ts": "2024-05-01T12:00:00Z",
    }
    record = Interaction.model_validate(http_body)
    assert Interaction.model_validate_json(encode(record)) == record
    assert record.ts == 1714564800000


def test_ts_is_optional_and_accepts_epoch_ms() -> None:
    assert Interaction(type="like", user_id="u", video_id="v").ts > 1_600_000_000_000
    assert Interaction(type="like", user_id="u", video_id="v", ts=1714564800000).ts == 1714564800000
    assert Interaction(type="like", user_id="u", video_id="v", ts="1714564800000").ts == 1714564800000


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "view", "user_id": "u", "video_id": "v"}, "watch_time_ms"),
        ({"type": "nap", "user_id": "u", "video_id": "v"}, "type"),
        ({"type": "like", "user_id": "", "video_id": "v"}, "user_id"),
        ({"type": "like", "user_id": "u", "video_id": "v", "ts": "yesterday"}, "ts"),
        ({"type": "like", "user_id": "u", "video_id": "v", "ts": "2024-05-01T12:00:00"}, "ts"),
        ({"type": "like", "user_id": "u", "video_id": "v", "mood": "happy"}, "mood"),
        ({"type": "view", "user_id": "u", "video_id": "v", "watch_time_ms": -1}, "watch_time_ms"),
    ],
)
def test_errors_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate(body)
    assert [e["field"] for e in describe_errors(exc.value, 7)] == [field]
    assert describe_errors(exc.value, 7)[0]["index"] == 7


def test_video_defaults() -> None:
    v = Video(video_id="v", creator_id="c")
    assert v.hashtags == [] and v.created_at > 0
    with pytest.raises(ValidationError):
        Video(video_id="v")  # creator is required


@pytest.mark.parametrize("bad", ["$where", "a.b", "a b", "a/b", "é", "x" * 129, "a\x00"])
def test_ids_cannot_reach_mongodb_as_operators_or_paths(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Interaction(type="like", user_id=bad, video_id="v")
    assert [e["field"] for e in describe_errors(exc.value)] == ["user_id"]
    assert (
        Interaction(type="like", user_id="user_42:a-b@c+d=e~f", video_id="v").user_id == "user_42:a-b@c+d=e~f"
    )


def test_times_ahead_of_the_clock_are_refused_only_with_a_limit() -> None:
    ahead = now_ms() + 86_400_000
    body = {"type": "like", "user_id": "u", "video_id": "v", "ts": ahead}
    assert Interaction.model_validate(body).ts == ahead  # agents: validated without a limit, then clamped
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate(body, context={FUTURE_SKEW_CONTEXT: now_ms() + 300_000})
    (error,) = describe_errors(exc.value)
    assert error["field"] == "ts" and "ahead" in error["message"]
    within = {**body, "ts": now_ms() + 60_000}
    assert (
        Interaction.model_validate(within, context={FUTURE_SKEW_CONTEXT: now_ms() + 300_000}).ts
        == within["ts"]
    )
    old = {**body, "ts": 1_000}  # any past time is fine: replays
    assert Interaction.model_validate(old, context={FUTURE_SKEW_CONTEXT: now_ms()}).ts == 1_000
    with pytest.raises(ValidationError):
        Video.model_validate(
            {"video_id": "v", "creator_id": "c", "created_at": ahead}, context={FUTURE_SKEW_CONTEXT: now_ms()}
        )


def test_bound_ts_clamps_to_append_time_plus_skew() -> None:
    event = Interaction(type="like", user_id="u", video_id="v", ts=10_000_000)
    assert bound_ts(event, 1_000_000, 300_000).ts == 1_300_000
    assert bound_ts(event, 20_000_000, 300_000) is event
    video = Video(video_id="v", creator_id="c", created_at=10_000_000)
    assert bound_ts(video, 1_000_000, 0).created_at == 1_000_000
