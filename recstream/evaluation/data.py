"""A dataset as numpy arrays: what the protocols split and the models train on.

A *row* is one input row of the dataset: the view plus the actions the loader derives from it (like,
share, ...), which share the row's user, video and time. The protocols split rows, never the events
of one row (a like must not land in the test set while its view trains the model). Each row keeps its
events so that a model can replay them exactly as the streaming agents saw them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recstream.records import EVENT_TYPES, Interaction
from recstream.scoring import EngagementParams, engagement_weight

_TYPE_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}


@dataclass(frozen=True)
class Dataset:
    """Rows in file order (the order the `recommenders` protocol's shuffles depend on).

    Row i: user `user[i]`, item `item[i]`, time `ts[i]`, summed engagement `weight[i]`; its events are
    `event_*[row_start[i]:row_start[i + 1]]`.
    """

    user: np.ndarray  # int32, index into user_ids
    item: np.ndarray  # int32, index into item_ids
    ts: np.ndarray  # int64 epoch ms
    weight: np.ndarray  # float64: sum of the row's engagement weights (> 0: a positive)
    row_start: np.ndarray  # int64, len(rows) + 1
    event_type: np.ndarray  # int8 code into EVENT_TYPES
    event_watch: np.ndarray  # int64 watch time ms, -1 = none
    event_duration: np.ndarray  # int64 duration ms, -1 = none
    event_weight: np.ndarray  # float64 engagement_weight of each event
    user_ids: list[str]
    item_ids: list[str]
    name: str = ""

    @property
    def n_rows(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def events_of(self, rows: np.ndarray) -> Iterator[Interaction]:
        """The events of `rows`, in the order given (a row's events in their own order)."""
        for r in rows:
            for e in range(self.row_start[r], self.row_start[r + 1]):
                watch, duration = int(self.event_watch[e]), int(self.event_duration[e])
                yield Interaction.model_construct(
                    type=EVENT_TYPES[self.event_type[e]],
                    user_id=self.user_ids[self.user[r]],
                    video_id=self.item_ids[self.item[r]],
                    ts=int(self.ts[r]),
                    watch_time_ms=None if watch < 0 else watch,
                    duration_ms=None if duration < 0 else duration,
                )


def from_events(
    events: Iterable[Interaction], params: EngagementParams | None = None, name: str = ""
) -> Dataset:
    """Group consecutive events of the same (user, video, ts) into rows (the loaders emit a row's
    view and its actions together), index users and items in order of first appearance."""
    params = params or EngagementParams()
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    row_user, row_item, row_ts, row_start = [], [], [], []
    ev_type, ev_watch, ev_dur, ev_weight = [], [], [], []
    last: tuple[str, str, int] | None = None
    for n, e in enumerate(events):
        key = (e.user_id, e.video_id, e.ts)
        if key != last:
            row_user.append(users.setdefault(e.user_id, len(users)))
            row_item.append(items.setdefault(e.video_id, len(items)))
            row_ts.append(e.ts)
            row_start.append(n)
            last = key
        ev_type.append(_TYPE_CODE[e.type])
        ev_watch.append(-1 if e.watch_time_ms is None else e.watch_time_ms)
        ev_dur.append(-1 if e.duration_ms is None else e.duration_ms)
        ev_weight.append(engagement_weight(e, params))
    row_start.append(len(ev_type))
    starts = np.asarray(row_start, dtype=np.int64)
    event_weight = np.asarray(ev_weight, dtype=np.float64)
    weight = np.add.reduceat(event_weight, starts[:-1]) if len(row_user) else np.zeros(0)
    return Dataset(
        user=np.asarray(row_user, dtype=np.int32),
        item=np.asarray(row_item, dtype=np.int32),
        ts=np.asarray(row_ts, dtype=np.int64),
        weight=weight,
        row_start=starts,
        event_type=np.asarray(ev_type, dtype=np.int8),
        event_watch=np.asarray(ev_watch, dtype=np.int64),
        event_duration=np.asarray(ev_dur, dtype=np.int64),
        event_weight=event_weight,
        user_ids=list(users),
        item_ids=list(items),
        name=name,
    )


def load(fmt: str, path: str | Path, params: EngagementParams | None = None) -> Dataset:
    """A dataset file in one of `recstream.datasets.FORMATS`, in file order."""
    from recstream.datasets import iter_events

    return from_events(iter_events(fmt, path), params, name=Path(path).stem)
