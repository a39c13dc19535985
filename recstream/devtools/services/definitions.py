"""The three local services recstream runs when no external one is configured."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from recstream.devtools.services.process import LocalService, ServiceError
from recstream.settings import Settings

_KAFKA_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_dir}/kafka-server.log
appender.file.filePattern = {log_dir}/kafka-server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""

_KAFKA_SERVER = """\
# Written by `recstream services up`: a single-node KRaft broker (broker + controller in one JVM).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=1
# Topics are created explicitly with their partition counts; an auto-created one would have 1.
auto.create.topics.enable=false
# One node: internal topics cannot be replicated; transactions still work with RF=1, min ISR 1.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups form at once instead of waiting 3 s for more members (tests, demos).
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
log.segment.bytes=268435456
"""


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    first = url.split(",")[0]
    parts = urlsplit(first if "://" in first else f"tcp://{first}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _is_local_default(host: str, port: int, default_port: int) -> bool:
    return host in ("127.0.0.1", "localhost") and port == default_port


def kafka_service(settings: Settings) -> LocalService | None:
    host, port = _host_port(settings.kafka_bootstrap, 9092)
    if not (
        settings.manage_kafka if settings.manage_kafka is not None else _is_local_default(host, port, 9092)
    ):
        return None
    home = settings.data_dir / "kafka"
    libs = settings.local_dir / "kafka" / "libs"
    config = home / "server.properties"

    def prepare() -> None:
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise ServiceError(f"kafka: broker jars missing in {libs}; run `make install` first")
        java = shutil.which("java")
        if java is None:
            raise ServiceError("kafka: `java` (17+) is not on PATH")
        (home / "logs").mkdir(parents=True, exist_ok=True)
        config.write_text(
            _KAFKA_SERVER.format(host=host, port=port, controller_port=port + 1, data_dir=home / "data")
        )
        (home / "log4j2.properties").write_text(_KAFKA_LOG4J2.format(log_dir=home / "logs"))
        if not (home / "data" / "meta.properties").exists():
            # KRaft storage must be formatted once with a cluster id before the first start.
            subprocess.run(
                [
                    java,
                    "-cp",
                    f"{libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    uuid.uuid4().hex[:22],
                    "-c",
                    str(config),
                ],
                check=True,
                capture_output=True,
                text=True,
            )

    def command() -> list[str]:
        return [
            shutil.which("java") or "java",
            f"-Xmx{settings.kafka_heap}",
            f"-Xms{settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(config),
        ]

    def health() -> None:
        asyncio.run(_kafka_metadata(settings, f"{host}:{port}"))

    return LocalService(
        name="kafka",
        host=host,
        port=port,
        run_dir=settings.data_dir / "run",
        log_file=home / "logs" / "stdout.log",
        command=command,
        health=health,
        prepare=prepare,
        extra_ports=(port + 1,),
    )


async def _kafka_metadata(settings: Settings, bootstrap: str) -> None:
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    # While the broker boots, aiokafka logs every refused connection; the caller reports the outcome.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    from recstream.kafka.config import client_kwargs

    admin = AIOKafkaAdminClient(**client_kwargs(settings, bootstrap), request_timeout_ms=3000)
    try:
        await admin.start()
        brokers = await admin.describe_cluster()
        if not brokers.get("brokers"):
            raise ServiceError("no broker registered yet")
    finally:
        await admin.close()


def redis_service(settings: Settings) -> LocalService | None:
    host, port = _host_port(settings.redis_url, 6379)
    if not (
        settings.manage_redis if settings.manage_redis is not None else _is_local_default(host, port, 6379)
    ):
        return None
    home = settings.data_dir / "redis"

    def command() -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise ServiceError("redis: `redis-server` is not installed; run `make install`")
        # AOF (fsync every second) plus RDB snapshots: a restart keeps what the cache held.
        return [
            binary,
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(home),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "60 1000",
            "--protected-mode",
            "yes",
            "--logfile",
            "",
        ]

    def health() -> None:
        import redis

        client = redis.Redis(host=host, port=port, socket_timeout=2)
        try:
            if not client.ping():
                raise ServiceError("PING did not return PONG")
        finally:
            client.close()

    return LocalService(
        name="redis",
        host=host,
        port=port,
        run_dir=settings.data_dir / "run",
        log_file=home / "redis.log",
        command=command,
        health=health,
        prepare=lambda: home.mkdir(parents=True, exist_ok=True),
    )


def mongo_service(settings: Settings) -> LocalService | None:
    host, port = _host_port(settings.mongo_url, 27017)
    if not (
        settings.manage_mongo if settings.manage_mongo is not None else _is_local_default(host, port, 27017)
    ):
        return None
    home = settings.data_dir / "mongo"

    def command() -> list[str]:
        # nx-27017 speaks the MongoDB wire protocol over SQLite (one file per database in --data-dir).
        # It is installed into the project's virtualenv; see the README for why not FerretDB.
        binary = Path(sys.executable).parent / "nx-27017"
        if not binary.exists():
            raise ServiceError(f"mongo: nx-27017 is not installed at {binary}; run `make install`")
        return [
            str(binary),
            "--data-dir",
            str(home / "db"),
            "--host",
            host,
            "--port",
            str(port),
            "--log-file",
            str(home / "nx-27017.log"),
            "--pid-file",
            str(home / "nx-27017.pid"),
        ]

    def health() -> None:
        from pymongo import MongoClient

        client = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=2000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    def prepare() -> None:
        (home / "db").mkdir(parents=True, exist_ok=True)

    return LocalService(
        name="mongo",
        host=host,
        port=port,
        run_dir=settings.data_dir / "run",
        log_file=home / "stdout.log",
        command=command,
        health=health,
        prepare=prepare,
    )
