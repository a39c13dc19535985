import pytest
from pydantic import ValidationError

from recstream.settings import Settings


def test_defaults() -> None:
    s = Settings(_env_file=None)
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.web_port == 6066
    assert s.interactions_partitions == 8


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTREAM_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("RECSTREAM_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("RECSTREAM_MONGO_URL", "mongodb://db:27017/")
    monkeypatch.setenv("RECSTREAM_DATA_DIR", "/srv/recstream")
    monkeypatch.setenv("RECSTREAM_WEB_PORT", "8080")
    s = Settings()
    assert s.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.redis_url == "redis://cache:6380/2"
    assert s.mongo_url == "mongodb://db:27017/"
    assert str(s.data_dir) == "/srv/recstream"
    assert s.web_port == 8080


def test_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.web_port = 1  # type: ignore[misc]
    monkeypatch.setenv("RECSTREAM_PROCESSING_GUARANTEE", "sometimes")
    with pytest.raises(ValidationError, match="processing_guarantee"):
        Settings()


def test_external_services_are_left_alone() -> None:
    from recstream.devtools.services.manager import local_services

    external = Settings(
        kafka_bootstrap="kafka.prod:9092",
        redis_url="redis://cache.prod:6379/0",
        mongo_url="mongodb://db.prod:27017/",
    )
    assert local_services(external) == {"kafka": None, "redis": None, "mongo": None}
    local = local_services(Settings())
    assert {name: s.address for name, s in local.items() if s} == {
        "kafka": "127.0.0.1:9092",
        "redis": "127.0.0.1:6379",
        "mongo": "127.0.0.1:27017",
    }
    forced = local_services(Settings(redis_url="redis://127.0.0.1:16379/0", manage_redis=True))
    assert forced["redis"] is not None and forced["redis"].port == 16379
