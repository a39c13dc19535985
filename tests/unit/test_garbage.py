"""The worker's collector policy: no automatic collection; a young run collects what is new and freezes
the survivors, and a full run (unfrozen first) finds a cycle among objects older than one run."""

from __future__ import annotations

import gc
import weakref

import pytest

from recstream.streaming.garbage import Collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def _restore_gc():  # noqa: ANN202
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_install_turns_automatic_collection_off() -> None:
    Collector.install()
    assert not gc.isenabled()


def test_a_run_collects_new_cycles_and_freezes_what_survives() -> None:
    collector = Collector(full_interval_s=3600)
    collector.collect()
    frozen = gc.get_freeze_count()
    new = _cycle()  # garbage made after the last run
    kept = _Node()  # alive: frozen by the next run
    assert new() is not None
    collector.collect()
    assert new() is None
    assert gc.get_freeze_count() > frozen
    assert not any(o is kept for o in gc.get_objects())  # frozen: no collection walks it any more


def test_a_cycle_among_frozen_objects_waits_for_the_full_run() -> None:
    collector = Collector(full_interval_s=3600)
    holder = [_Node(), _Node()]
    holder[0].other, holder[1].other = holder[1], holder[0]
    old = weakref.ref(holder[0])
    collector.collect()  # the pair survives and is frozen
    holder.clear()  # now garbage, but only a cycle keeps it
    collector.collect()
    assert old() is not None  # the incremental run does not walk frozen objects
    collector.full_interval_s = 0
    collector._next_full = 0
    collector.collect()
    assert old() is None


def test_with_young_runs_off_only_the_full_run_collects() -> None:
    """The worker's default: a run before the full one is due walks nothing (no pause) but freezes what
    is new (so that Faust's own collections at a rebalance do not walk it), and the full run finds what
    was made meanwhile."""
    collector = Collector(full_interval_s=3600, young_runs=False)
    frozen = gc.get_freeze_count()
    new = _cycle()
    assert collector.collect() is None
    assert new() is not None and gc.get_freeze_count() > frozen
    collector._next_full = 0
    assert collector.collect() >= 2  # the two nodes
    assert new() is None
