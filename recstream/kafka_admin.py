"""Creating recstream's topics with the right partitions and cleanup policies (idempotent)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from recstream.settings import Settings
from recstream.topics import topic_names


def topic_specs(settings: Settings) -> list[NewTopic]:
    names = topic_names(settings)
    rf = settings.replication_factor
    return [
        NewTopic(names.interactions, settings.interactions_partitions, rf),
        NewTopic(names.video_events, settings.interactions_partitions, rf),
        NewTopic(names.covisit, settings.covisit_partitions, rf),
        # Compacted: the latest metadata of every video survives forever, older versions go.
        NewTopic(names.videos, settings.interactions_partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(names.dead_letters, 1, rf),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create any missing topic; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process won the race: fine
                pass
        return [t.name for t in missing]
    finally:
        await admin.close()
