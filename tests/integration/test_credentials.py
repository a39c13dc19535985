"""Backing services with credentials, for real: a private redis-server with requirepass (configured on
stdin, as docker-compose.yml does) and a private Apache Kafka broker (the genuine jars) started by
deploy/kafka-start.sh, the script compose runs, with SASL/SCRAM on its client listener. recstream's
clients authenticate through the settings; a wrong password is refused and never printed."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from recstream.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "redis-" + uuid.uuid4().hex
KAFKA_PASSWORD = "kafka-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home, port = tmp_path_factory.mktemp("redis-auth"), _free_port()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "-",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(home),
            "--save",
            "",
            "--logfile",
            str(home / "redis.log"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc.stdin.write(f'requirepass "{PASSWORD}"\n'.encode())
    proc.stdin.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port, password=PASSWORD, socket_timeout=1).ping()
            break
        except redis.RedisError:
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.1)
    yield port
    _stop(proc)


async def test_redis_clients_authenticate_with_the_url_password(
    redis_with_password: int, services: Settings
) -> None:
    from recstream.serving.foldin import ModelCache
    from recstream.serving.stores import Stores

    port = redis_with_password
    with pytest.raises(redis.AuthenticationError):  # it really demands the password
        redis.Redis(port=port, socket_timeout=2).set("k", "v")
    good = services.model_copy(update={"redis_url": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"})
    bad = services.model_copy(update={"redis_url": f"redis://:wrong-{PASSWORD}@127.0.0.1:{port}/0"})
    redis.Redis(port=port, password=PASSWORD).set("hist:u1", b"v1")

    stores = Stores(good)
    try:
        assert (await stores.health())["redis"] == "ok"
        assert await stores.user_reads.mget(["hist:u1", "nothing"]) == [b"v1", None]
    finally:
        await stores.close()
    models = ModelCache.from_url(good.redis_url)
    try:
        assert await models._redis.ping()  # noqa: SLF001 - the client the model cache polls with
    finally:
        await models.close()

    stores = Stores(bad)
    try:
        health = (await stores.health())["redis"]
        assert health.startswith("error") and PASSWORD not in health  # /health says why, not the secret
        with pytest.raises(Exception) as refused:
            await stores.user_reads.mget(["hist:u1"])
        assert PASSWORD not in str(refused.value)
    finally:
        await stores.close()
    assert PASSWORD not in repr(bad) and PASSWORD not in repr(good)


def _kafka_home(tmp: Path) -> Path:
    """bin/ scripts of the apache/kafka image that deploy/kafka-start.sh runs, over the genuine jars."""
    libs = get_settings().local_dir / "kafka" / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        pytest.fail(f"Kafka jars missing in {libs}: run `make install`")
    home = tmp / "kafka-home"
    (home / "bin").mkdir(parents=True)
    for script, main in (
        ("kafka-storage.sh", "kafka.tools.StorageTool"),
        ("kafka-server-start.sh", "kafka.Kafka"),
    ):
        path = home / "bin" / script
        heap = "-Xmx256m -Xms256m" if main == "kafka.Kafka" else ""
        path.write_text(f'#!/usr/bin/env bash\nexec java {heap} -cp "{libs}/*" {main} "$@"\n')
        path.chmod(0o755)
    return home


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("kafka-sasl")
    port = _free_port()
    controller = _free_port()
    env = {
        **os.environ,
        "KAFKA_HOME": str(_kafka_home(tmp)),
        "KAFKA_DATA_DIR": str(tmp / "data"),
        "KAFKA_CONFIG_DIR": str(tmp / "conf"),
        "KAFKA_ADVERTISED_HOST": "127.0.0.1",
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_CLUSTER_ID": "rEcStReAmTeStClUsTeR01",
        "KAFKA_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex,
        "KAFKA_CLIENT_USERNAME": "recstream",
        "KAFKA_CLIENT_PASSWORD": KAFKA_PASSWORD,
        "LOG_DIR": str(tmp / "logs"),
    }
    log = open(tmp / "broker.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(ROOT / "deploy" / "kafka-start.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ready = Settings(
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username="recstream",
        kafka_password=KAFKA_PASSWORD,
    )
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, (tmp / "broker.log").read_text(errors="replace")[-3000:]
        try:
            asyncio.run(_admin_round_trip(ready))
            break
        except Exception:
            assert time.monotonic() < deadline, "the SASL broker did not start"
            time.sleep(0.5)
    # The file the broker reads holds passwords: the script writes it for its user only.
    assert (tmp / "conf" / "server.properties").stat().st_mode & 0o077 == 0
    yield f"127.0.0.1:{port}"
    _stop(proc)
    log.close()


def _sasl_settings(bootstrap: str, password: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in (
        ("KAFKA_BOOTSTRAP", bootstrap),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_USERNAME", "recstream"),
        ("KAFKA_PASSWORD", password),
        ("TOPIC_PREFIX", "sasl-" + uuid.uuid4().hex[:6]),
        ("INTERACTIONS_PARTITIONS", "2"),
    ):
        monkeypatch.setenv(f"RECSTREAM_{name}", value)
    get_settings.cache_clear()
    return get_settings()


def test_kafka_clients_authenticate_with_scram(sasl_kafka: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import AIOKafkaConsumer

    from recstream.kafka.config import client_kwargs
    from recstream.kafka.topics import topic_names
    from recstream.producers.publish import Publisher
    from recstream.records import Interaction
    from recstream.training.extract import kafka_end_offsets

    try:
        settings = _sasl_settings(sasl_kafka, KAFKA_PASSWORD, monkeypatch)
        topic = topic_names(settings).interactions
        events = [
            Interaction(type="like", user_id=f"u{i}", video_id="v1", ts=1_700_000_000_000 + i)
            for i in range(20)
        ]

        async def produce_and_read() -> list[bytes]:
            async with Publisher(settings) as pub:  # creates the topics (admin client), then produces
                for e in events:
                    await pub.event(e)
            consumer = AIOKafkaConsumer(
                topic, **client_kwargs(settings), auto_offset_reset="earliest", enable_auto_commit=False
            )
            await consumer.start()
            try:
                got: list[bytes] = []
                deadline = time.monotonic() + 30
                while len(got) < len(events) and time.monotonic() < deadline:
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        got += [m.value for m in batch]
                return got
            finally:
                await consumer.stop()

        got = asyncio.run(produce_and_read())
        assert len(got) == len(events)
        # Training's extract sizes the log through the same settings (its Spark read gets spark_options).
        offsets = kafka_end_offsets(settings.kafka_bootstrap, topic)
        assert sum(end - start for start, end in offsets.values()) == len(events)

        wrong = _sasl_settings(sasl_kafka, "not-" + KAFKA_PASSWORD, monkeypatch)
        with pytest.raises(Exception) as refused:
            asyncio.run(_admin_round_trip(wrong))
        assert KAFKA_PASSWORD not in str(refused.value)
    finally:
        get_settings.cache_clear()


async def _admin_round_trip(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from recstream.kafka.config import client_kwargs

    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()
