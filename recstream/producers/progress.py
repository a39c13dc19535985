"""A progress line for long-running publishers (simulate, replay): count, rate, elapsed, on stderr.

On a terminal it is one line redrawn in place a few times a second; when stderr is a file or a pipe
(CI logs, docker) it prints a plain line every few seconds instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

TTY_INTERVAL_S = 0.2
LOG_INTERVAL_S = 5.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Counts things and shows how fast they go. `add()` is cheap enough to call once per event."""

    def __init__(
        self,
        label: str,
        unit: str = "events",
        quiet: bool = False,
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.count = 0
        self.detail = ""
        """Free text shown after the numbers (e.g. the event time a replay has reached)."""
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = (
            interval_s if interval_s is not None else (TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S)
        )
        self.started = time.monotonic()
        self._next_show = self.started + self.interval_s
        self._closed = False

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        text = f"{self.label}: {self.count:,} {self.unit} | {self.rate:,.0f}/s | {_clock(self.elapsed_s)} elapsed"
        return f"{text} | {self.detail}" if self.detail else text

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.quiet:
            return
        now = time.monotonic()
        if now >= self._next_show:
            self._next_show = now + self.interval_s
            self._show()

    def _show(self, final: bool = False) -> None:
        if self.tty:
            # \r + erase-line: redraw in place; the final draw ends the line.
            self.stream.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the final numbers once (nothing when quiet)."""
        if self._closed:
            return
        self._closed = True
        if not self.quiet:
            self._show(final=True)
