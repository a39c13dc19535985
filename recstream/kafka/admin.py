"""Creating recstream's topics with the right partitions and cleanup policies (idempotent)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from tenacity import AsyncRetrying, RetryError, retry_if_not_result, stop_after_delay, wait_fixed

from recstream.kafka.config import client_kwargs
from recstream.kafka.topics import topic_names
from recstream.settings import Settings


def topic_specs(settings: Settings) -> list[NewTopic]:
    names = topic_names(settings)
    rf = settings.replication_factor
    return [
        NewTopic(names.interactions, settings.interactions_partitions, rf),
        NewTopic(names.video_events, settings.interactions_partitions, rf),
        NewTopic(names.covisit, settings.covisit_partitions, rf),
        # Compacted: the latest metadata of every video survives forever, older versions go.
        NewTopic(
            names.videos, settings.interactions_partitions, rf, topic_configs={"cleanup.policy": "compact"}
        ),
        NewTopic(names.dead_letters, 1, rf),
        NewTopic(names.impressions, settings.interactions_partitions, rf),
    ]


async def ensure_topics(
    settings: Settings, extra: list[NewTopic] | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Create any missing topic and wait until the broker's metadata lists it; returns the names created."""
    specs = topic_specs(settings) + list(extra or [])
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process won the race: fine
                pass

            # Creation is asynchronous in KRaft: a consumer that looks before the metadata has the
            # topic ignores it (and Faust then fails its table with "changelog has 0 partitions").
            async def visible() -> bool:
                return {t.name for t in missing} <= set(await admin.list_topics())

            try:
                await AsyncRetrying(
                    stop=stop_after_delay(timeout_s),
                    wait=wait_fixed(0.1),
                    retry=retry_if_not_result(bool),
                )(visible)
            except RetryError:
                raise TimeoutError(
                    f"topics not visible after {timeout_s:.0f}s: {[t.name for t in missing]}"
                ) from None
        return [t.name for t in missing]
    finally:
        await admin.close()


def changelog_specs(
    tables: Iterable[Any], default_partitions: int, replication_factor: int
) -> list[NewTopic]:
    """Faust tables' changelog topics, with the cleanup policy Faust itself would give them."""
    specs = []
    for table in tables:
        topic = table.changelog_topic
        policy = ",".join(p for p, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        config = {"cleanup.policy": policy or "delete"}
        if topic.retention:
            config["retention.ms"] = str(int(topic.retention * 1000))
        specs.append(
            NewTopic(
                topic.get_topic_name(),
                table.partitions or default_partitions,
                replication_factor,
                topic_configs=config,
            )
        )
    return specs
