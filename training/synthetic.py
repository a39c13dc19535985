"""Synthetic interaction logs with hidden tastes, for tests and the benchmark (numpy, fixed seed).

Users like a few topics (Dirichlet tastes); videos belong to one topic and have power-law popularity.
A user mostly picks videos of liked topics (popular ones more often) and sometimes explores globally
popular ones; watch ratio, likes, shares, comments and follows rise with taste, fast skips fall with
it. A recommender that learns tastes beats popularity on this data; one that does not, does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Log:
    """Events in columns, time-ordered within each user. `kind`: index into KINDS."""

    user: np.ndarray
    item: np.ndarray
    kind: np.ndarray
    ts: np.ndarray
    watch_ms: np.ndarray
    duration_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


KINDS = ("view", "like", "share", "comment", "follow", "skip")


def generate(
    n_users: int,
    n_items: int,
    n_views: int,
    *,
    n_topics: int = 30,
    explore: float = 0.1,
    zipf: float = 1.0,
    seed: int = 7,
) -> Log:
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(0, n_topics, n_items)
    popularity = 1.0 / (1 + rng.permutation(n_items)) ** zipf
    duration = rng.integers(5_000, 60_000, n_items)
    tastes = rng.dirichlet(np.full(n_topics, 0.15), n_users)

    # Views per user: heavy-tailed (lognormal), at least 3, summing to about n_views.
    raw = rng.lognormal(0.0, 0.8, n_users)
    per_user = np.maximum(3, np.round(raw / raw.sum() * n_views)).astype(np.int64)
    user = np.repeat(np.arange(n_users), per_user)
    n = len(user)

    cdf = np.cumsum(tastes, axis=1)
    topic = (rng.random(n)[:, None] > cdf[user]).sum(axis=1).clip(max=n_topics - 1)
    item = np.empty(n, dtype=np.int64)
    for t in range(n_topics):
        members = np.flatnonzero(item_topic == t)
        events = np.flatnonzero(topic == t)
        if len(members) == 0:
            members = np.arange(n_items)
        p = popularity[members] / popularity[members].sum()
        item[events] = members[rng.choice(len(members), size=len(events), p=p)]
    exploring = rng.random(n) < explore
    item[exploring] = rng.choice(n_items, size=int(exploring.sum()), p=popularity / popularity.sum())

    affinity = tastes[user, item_topic[item]] / tastes[user].max(axis=1)  # 1 = the user's favourite topic
    ratio = rng.beta(0.5 + 4 * affinity, 0.5 + 4 * (1 - affinity)) * 1.3
    watch = (ratio * duration[item]).astype(np.int64)

    # Timestamps: each user's session starts somewhere in 30 days, events minutes apart, in order.
    start = T0_MS + rng.integers(0, 30 * 86_400_000, n_users)
    gaps = rng.exponential(120_000, n).astype(np.int64) + 1
    first = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    run = np.cumsum(gaps)
    ts = start[user] + run - np.repeat(run[first] - gaps[first], per_user)

    cols = [(user, item, np.zeros(n, np.int64), ts, watch)]
    for kind, base in ((1, 0.25), (2, 0.05), (3, 0.05), (4, 0.03)):
        extra = rng.random(n) < base * affinity**2
        cols.append((user[extra], item[extra], np.full(extra.sum(), kind), ts[extra] + 1, watch[extra]))
    skip = rng.random(n) < 0.3 * (1 - affinity)
    cols.append((user[skip], item[skip], np.full(skip.sum(), 5), ts[skip] + 1, watch[skip]))
    u, i, k, t, w = (np.concatenate(c) for c in zip(*cols, strict=True))
    order = np.lexsort((t, u))
    return Log(u[order], i[order], k[order], t[order], w[order], duration[i[order]])


def records(log: Log) -> Iterator[dict[str, object]]:
    """Interaction records (the wire contract) of a log."""
    for u, i, k, t, w, d in zip(
        log.user.tolist(),
        log.item.tolist(),
        log.kind.tolist(),
        log.ts.tolist(),
        log.watch_ms.tolist(),
        log.duration_ms.tolist(),
        strict=True,
    ):
        rec: dict[str, object] = {"type": KINDS[k], "user_id": f"u{u}", "video_id": f"v{i}", "ts": t}
        if k == 0:
            rec["watch_time_ms"], rec["duration_ms"] = w, d
        yield rec


def write_jsonl(log: Log, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for rec in records(log):
            fh.write(json.dumps(rec, separators=(",", ":")))
            fh.write("\n")
    return path
