import pytest
from pydantic import ValidationError

from recstream.records import Interaction, Video, describe_errors, encode


def test_one_schema_round_trips_http_json_to_kafka_bytes() -> None:
    # POST /events validates with Interaction; agents parse Kafka bytes with the same model.
    http_body = {"type": "view", "user_id": "u1", "video_id": "v1", "watch_time_ms": 1200, "duration_ms": 3000,
                 "ts": "2024-05-01T12:00:00Z"}
    record = Interaction.model_validate(http_body)
    assert Interaction.model_validate_json(encode(record)) == record
    assert record.ts == 1714564800000


def test_ts_is_optional_and_accepts_epoch_ms() -> None:
    assert Interaction(type="like", user_id="u", video_id="v").ts > 1_600_000_000_000
    assert Interaction(type="like", user_id="u", video_id="v", ts=1714564800000).ts == 1714564800000
    assert Interaction(type="like", user_id="u", video_id="v", ts="1714564800000").ts == 1714564800000


@pytest.mark.parametrize("body, field", [
    ({"type": "view", "user_id": "u", "video_id": "v"}, "watch_time_ms"),
    ({"type": "nap", "user_id": "u", "video_id": "v"}, "type"),
    ({"type": "like", "user_id": "", "video_id": "v"}, "user_id"),
    ({"type": "like", "user_id": "u", "video_id": "v", "ts": "yesterday"}, "ts"),
    ({"type": "like", "user_id": "u", "video_id": "v", "ts": "2024-05-01T12:00:00"}, "ts"),
    ({"type": "like", "user_id": "u", "video_id": "v", "mood": "happy"}, "mood"),
    ({"type": "view", "user_id": "u", "video_id": "v", "watch_time_ms": -1}, "watch_time_ms"),
])
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
