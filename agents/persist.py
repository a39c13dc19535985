"""Durable copies in MongoDB, in batches: per-video stats and user profiles changed since the last run."""

from __future__ import annotations

import logging

from recstream.agents import engagement, history
from recstream.app import app
from recstream.runtime import stores

_s = app.recstream_settings  # type: ignore[attr-defined]
log = logging.getLogger(__name__)


@app.timer(interval=_s.persist_interval_s)
async def persist_video_stats() -> None:
    if not engagement.dirty_stats:
        return
    videos = list(engagement.dirty_stats)
    engagement.dirty_stats.difference_update(videos)
    docs = await stores().video_stats(videos)
    try:
        await stores().upsert_many("video_stats", docs)
    except Exception:  # MongoDB down: keep them dirty and try again next time; Redis still serves
        engagement.dirty_stats.update(videos)
        log.exception("persisting %d video stats to MongoDB failed; will retry", len(videos))


@app.timer(interval=_s.persist_interval_s)
async def persist_user_profiles() -> None:
    if not history.dirty_users:
        return
    users = list(history.dirty_users)
    history.dirty_users.difference_update(users)
    docs = {}
    for user in users:
        recent, _seen = await stores().user_state(user)
        docs[user] = {"history": recent, "updated_ms": max((e[1] for e in recent), default=0)}
    try:
        await stores().upsert_many("user_profiles", docs)
    except Exception:
        history.dirty_users.update(users)
        log.exception("persisting %d user profiles to MongoDB failed; will retry", len(users))
