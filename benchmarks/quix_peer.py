"""recstream's streaming work written idiomatically in quixstreams: the peer of the ingest benchmark.

The same stages as recstream's agents, on the same broker and a pre-produced interactions topic
(`workload.py`), with quixstreams' RocksDB state and its own repartition (`group_by`) topics:

    interactions (key user_id) --history (state: last 50 videos)--> co-visitation pairs
        pairs --group_by(source video)--> neighbour weights (state: {dst: summed weight})
    interactions --group_by(video_id)--> lifetime counters (state), 60 s tumbling and
        1 h / 15 min hopping windows over the same counters (event time = Interaction.ts)

The run stops itself once every input event has gone through the history and per-video stages and
every pair the history stage emitted has reached the neighbour stage, then prints one JSON line.

    python benchmarks/quix_peer.py --bootstrap 127.0.0.1:9092 --topic T --events N

quixstreams names its internal topics `repartition__<group>--...` and `changelog__<group>--...`; the
default consumer group is `quixbench.peer-<random>`; those topics and the group are deleted after the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from quixstreams import Application, State

from recstream import scoring
from recstream.records import Interaction

PARAMS = scoring.EngagementParams()
HISTORY_LENGTH, COVISIT_LOOKBACK, COVISIT_RECENCY = (
    50,
    10,
    0.8,
)  # recstream's Settings defaults (pairs both ways)
SHORT_WINDOW = timedelta(seconds=60)
LONG_WINDOW, LONG_STEP = timedelta(hours=1), timedelta(minutes=15)


class Progress:
    """What each stage has processed, so the run can stop once every input event is through.

    All stages run in the application's one processing thread: plain counters are enough.
    """

    def __init__(self, app: Application, events: int) -> None:
        self.app, self.events = app, events
        self.history = self.videos = self.pairs_emitted = self.pairs_done = self.late = 0
        self.t_first = self.t_history = self.t_last = 0.0
        self._calls, self._shown = 0, 0.0
        self.video_counts: dict[str, dict[str, float]] = {}

    def first(self) -> None:
        if not self.t_first:
            self.t_first = time.perf_counter()

    def summary(self) -> str:
        return (
            f"history {self.history:,}, videos {self.videos:,} of {self.events:,} events; "
            f"pairs {self.pairs_done:,} of {self.pairs_emitted:,}"
        )

    def check(self) -> None:
        self._calls += 1
        if self._calls % 8192 == 0 and time.perf_counter() - self._shown > 30:
            self._shown = time.perf_counter()  # a progress line on stderr: a full run takes minutes
            print(f"quix_peer: {self.summary()} after {self._shown - self.t_first:.0f}s", file=sys.stderr)
        if (
            self.videos >= self.events
            and self.history >= self.events
            and self.pairs_done >= self.pairs_emitted
        ):
            self.t_last = time.perf_counter()
            self.app.stop()  # a flag: the current message finishes, then the final checkpoint commits


def build(app: Application, topic_name: str, progress: Progress, grace: timedelta) -> None:
    """The topology; every stage keeps its state in the app's RocksDB stores."""
    topic = app.topic(
        topic_name,
        key_deserializer="str",
        value_deserializer="json",
        # Event time is the interaction's own ts, not the Kafka timestamp (when it was produced).
        timestamp_extractor=lambda value, _headers, _ts, _type: value["ts"],
    )
    events = app.dataframe(topic)

    def history_step(value: dict[str, Any], state: State) -> list[tuple[str, str, float]]:
        progress.first()
        record = Interaction.model_validate(value)  # recstream validates every message too
        history = state.get("history", [])
        weight = scoring.engagement_weight(record, PARAMS)
        pairs = scoring.covisit_pairs(history, record.video_id, weight, COVISIT_LOOKBACK, COVISIT_RECENCY)
        pairs += [(dst, src, w) for src, dst, w in pairs]  # both ways, as recstream's default
        state.set(
            "history", scoring.update_history(history, record.video_id, record.ts, weight, HISTORY_LENGTH)
        )
        progress.history += 1
        progress.pairs_emitted += len(pairs)
        if progress.history == progress.events:
            progress.t_history = time.perf_counter()
        progress.check()
        return pairs

    def add_pair(pair: list[Any], state: State) -> None:
        _src, dst, weight = pair
        neighbours = state.get("neighbours", {})
        neighbours[dst] = round(neighbours.get(dst, 0.0) + weight, 6)
        state.set("neighbours", neighbours)
        progress.pairs_done += 1
        progress.check()

    # One message per pair (keyed by its source video): quixstreams has no per-batch hook to sum a
    # batch's pairs per source first, as recstream's history agent does.
    pairs = events.apply(history_step, stateful=True, expand=True)
    pairs = pairs.group_by(lambda pair: pair[0], name="covisit-src")
    pairs.update(add_pair, stateful=True)

    def add_lifetime(delta: dict[str, float], key: str, _ts: int, _headers: Any, state: State) -> None:
        counts = scoring.add_counts(state.get("counts", {}), delta)
        state.set("counts", counts)
        progress.video_counts[key] = counts  # what the state now holds, for the equality check
        progress.videos += 1
        progress.check()

    def late(*_args: Any) -> bool:
        progress.late += 1
        return True  # and let quixstreams log it

    videos = events.group_by("video_id")
    videos = videos.apply(lambda value: scoring.event_counts(Interaction.model_validate(value), PARAMS))
    videos = videos.update(add_lifetime, stateful=True, metadata=True)
    # Two branches of the same per-video stream; `.current()` emits each updated window downstream
    # (nothing consumes it here), as recstream's tables expose the live window at once.
    (
        videos.tumbling_window(SHORT_WINDOW, grace_ms=grace, name="short", on_late=late)
        .reduce(scoring.add_counts, dict)
        .current()
    )
    (
        videos.hopping_window(LONG_WINDOW, LONG_STEP, grace_ms=grace, name="long", on_late=late)
        .reduce(scoring.add_counts, dict)
        .current()
    )


def cleanup(bootstrap: str, consumer_group: str) -> list[str]:
    """Delete this consumer group's repartition and changelog topics, and the group itself.

    Only names that embed the group (`<type>__<group>--...`): the broker is shared.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    mine = [
        t
        for t in admin.list_topics(timeout=30).topics
        if t.startswith(("repartition__", "changelog__")) and f"__{consumer_group}--" in t
    ]
    for future in admin.delete_topics(mine, operation_timeout=30).values() if mine else ():
        future.result()
    try:
        admin.delete_consumer_groups([consumer_group], request_timeout=30)[consumer_group].result()
    except KafkaException as exc:  # e.g. still non-empty after a failed run: leave it, say so
        print(f"quix_peer: consumer group {consumer_group} kept: {exc}", file=sys.stderr)
    return mine


def run_peer(
    bootstrap: str,
    topic: str,
    events: int,
    state_dir: str | None = None,
    consumer_group: str | None = None,
    grace_s: float = 3600.0,
    keep_topics: bool = False,
) -> dict[str, Any]:
    """Process `events` events of `topic` from the start; returns the figures and `video_counts`.

    `grace_s` must exceed how far event time can run backwards within one video's stream: the
    repartition merges 8 user partitions, read at slightly different speeds.
    """
    group = consumer_group or f"quixbench.peer-{uuid.uuid4().hex[:8]}"
    own_state = state_dir is None
    state_path = Path(tempfile.mkdtemp(prefix="quixbench-state-")) if own_state else Path(state_dir)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",  # the topic is pre-produced: read it from the start
        state_dir=state_path,
        loglevel="WARNING",
    )
    progress = Progress(app, events)
    build(app, topic, progress, timedelta(seconds=grace_s))
    try:
        app.run()
    finally:
        if own_state:
            shutil.rmtree(state_path, ignore_errors=True)
        deleted = [] if keep_topics else cleanup(bootstrap, group)
    if not progress.t_last:  # app.run() also returns on SIGTERM / SIGINT (quixstreams handles both)
        raise RuntimeError(f"the app stopped before the end: {progress.summary()}")
    seconds = progress.t_last - progress.t_first
    history_s = progress.t_history - progress.t_first
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1),
        "first_stage_events_per_s": round(events / history_s, 1) if history_s > 0 else None,
        "pairs": progress.pairs_emitted,
        "late_events": progress.late,
        "videos": len(progress.video_counts),
        "consumer_group": group,
        "internal_topics_deleted": len(deleted),
        "quixstreams": _quix_version(),
        "video_counts": progress.video_counts,
    }


def _quix_version() -> str:
    from importlib.metadata import version

    return version("quixstreams")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="recstream's streaming work in quixstreams (benchmark peer)."
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True, help="a pre-produced interactions topic (workload.py)")
    parser.add_argument("--events", type=int, required=True, help="how many events the topic holds")
    parser.add_argument("--state-dir", default=None, help="RocksDB state (default: a temporary directory)")
    parser.add_argument("--consumer-group", default=None, help="default: quixbench.peer-<random>")
    parser.add_argument("--grace-s", type=float, default=3600.0, help="window grace period, seconds")
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the repartition/changelog topics and the consumer group",
    )
    parser.add_argument(
        "--counts-out",
        default=None,
        help="where video_counts go (default: a temporary file); '-' = inline in the JSON line",
    )
    args = parser.parse_args(argv)
    result = run_peer(
        args.bootstrap,
        args.topic,
        args.events,
        args.state_dir,
        args.consumer_group,
        args.grace_s,
        args.keep_topics,
    )
    if args.counts_out != "-":
        # Tens of thousands of videos: too big for one line on stdout.
        path = args.counts_out or tempfile.mkstemp(prefix="quixbench-counts-", suffix=".json")[1]
        Path(path).write_text(json.dumps(result.pop("video_counts")))
        result["video_counts_file"] = path
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
