"""Every Kafka topic recstream uses, named in one place (derived from the settings' prefix)."""

from __future__ import annotations

from dataclasses import dataclass

from recstream.settings import Settings


@dataclass(frozen=True)
class TopicNames:
    interactions: str
    """User actions (Interaction JSON), keyed by user_id: the log everything derives from."""
    videos: str
    """Video metadata (Video JSON), keyed by video_id, compacted: the latest version of each video."""
    video_events: str
    """Interactions repartitioned by video_id, for the per-video engagement tables."""
    covisit: str
    """Co-visitation pairs (CovisitPair JSON), keyed by source video, for the item-CF tables."""
    dead_letters: str
    """Messages that could not be parsed or validated (DeadLetter JSON), with the reason."""


def topic_names(settings: Settings) -> TopicNames:
    p = settings.topic_prefix
    return TopicNames(
        interactions=f"{p}.interactions",
        videos=f"{p}.videos",
        video_events=f"{p}.video-events",
        covisit=f"{p}.covisit",
        dead_letters=f"{p}.dead-letters",
    )
