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
    """Engagement facts repartitioned by video, for the per-video engagement table: packed lists of
    entries, one message per partition per history batch (internal; `-v2`: its format changed)."""
    covisit: str
    """Co-visitation pairs partitioned by source video, for the neighbour table: packed lists of
    entries, one source's pairs at one time per entry (internal; `-v4`: grouped by source; `-v3`
    entries carried single pairs). In-flight pairs of an older topic are not read: upgrade by replaying
    the log (`recstream rebuild`)."""
    dead_letters: str
    """Messages that could not be parsed or validated (DeadLetter JSON), with the reason."""
    impressions: str
    """What serving showed (Shown JSON), keyed by user: one message per answer with items."""


def topic_names(settings: Settings) -> TopicNames:
    p = settings.topic_prefix
    return TopicNames(
        interactions=f"{p}.interactions",
        videos=f"{p}.videos",
        video_events=f"{p}.video-events-v3",
        covisit=f"{p}.covisit-v6",
        dead_letters=f"{p}.dead-letters",
        impressions=f"{p}.impressions",
    )
