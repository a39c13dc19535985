"""The worker's garbage collection: on a timer, never mid-batch, and rarely.

Reference counting frees the agents' state as it is replaced (table values are acyclic JSON-like data);
the collector only finds reference cycles, and a worker makes almost none (a few hundred objects in
minutes, most of them at start-up). Left automatic, it still walked the young objects every ~100,000
allocations (30-50 ms, about once a second under load) and the older generations, up to the whole table
cache, now and then (0.1-0.4 s): pauses that held up every user's next event. So a worker disables the
automatic collector, and every `gc_full_interval_s` (1 h) one run walks everything and freezes what
survives (a pause of a few hundred ms with a large table cache, once an hour); between those a tick
only freezes what is new, so that Faust's own collections (per table at every rebalance) walk little.

Runs in between (`gc_interval_s`, off by default) collect only what was made since the previous run
and freeze the survivors (`gc.freeze`), so that each walks one interval's survivors, not the whole heap.
That is still every object the agents made and kept meanwhile: at 5,000 events/s a run every 10 s held
the event loop 150-250 ms (2-3 % of the time, and 2.4 % of the worker's CPU), in the tail of every
user-facing latency, to find a few cycles that the hourly run finds anyway.
"""

from __future__ import annotations

import gc
import time


class Collector:
    def __init__(self, full_interval_s: float, young_runs: bool = True) -> None:
        """`young_runs`: whether a run before the full one is due collects the objects made since the
        last run (else it only freezes them)."""
        self.full_interval_s = full_interval_s
        self.young_runs = young_runs
        self._next_full = time.monotonic() + full_interval_s

    @staticmethod
    def install() -> None:
        """In a worker process, before its agents start."""
        gc.disable()

    def collect(self) -> int | None:
        """One run: the unreachable cycles found (all generations, the frozen ones too when it is time);
        None when it only froze them (young runs off and the full run not due)."""
        now = time.monotonic()
        full = now >= self._next_full
        if not full and not self.young_runs:
            # Only freeze (no walk): Faust's own `gc.collect()` calls (at every rebalance, per table)
            # then walk what was made since the last tick, not everything made since the last full run.
            gc.freeze()
            return None
        if full:
            gc.unfreeze()
            self._next_full = now + self.full_interval_s
        found = gc.collect()
        gc.freeze()
        return found
