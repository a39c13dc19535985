"""The worker's garbage collection: on a timer, over what is new since the last time, never mid-batch.

Reference counting frees the agents' state as it is replaced (table values are acyclic JSON-like data);
the collector only finds reference cycles, and a worker makes almost none (a few hundred objects in
minutes, most of them at start-up). Left automatic, it still walked the young objects every ~100,000
allocations (30-50 ms, about once a second under load) and the older generations, up to the whole table
cache, now and then (0.1-0.4 s): pauses that held up every user's next event. So a worker disables the
automatic collector and, every `gc_interval_s`, collects what was created since the previous run and
then freezes the survivors (`gc.freeze`): each run walks one interval's survivors, not the whole heap.
A cycle among frozen objects is not found by those runs, so every `gc_full_interval_s` one run unfreezes
everything first and walks it all (a longer pause, rarely).
"""

from __future__ import annotations

import gc
import time


class Collector:
    def __init__(self, full_interval_s: float) -> None:
        self.full_interval_s = full_interval_s
        self._next_full = time.monotonic() + full_interval_s

    @staticmethod
    def install() -> None:
        """In a worker process, before its agents start."""
        gc.disable()

    def collect(self) -> int:
        """One run: the unreachable cycles found (all generations, the frozen ones too when it is time)."""
        now = time.monotonic()
        if now >= self._next_full:
            gc.unfreeze()
            self._next_full = now + self.full_interval_s
        found = gc.collect()
        gc.freeze()
        return found
