"""A local server process that we start, find by its PID file, health-check and stop."""

from __future__ import annotations

import operator
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_not_result, stop_after_delay, stop_never, wait_fixed

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A local service could not be started, stopped or reached."""


@dataclass
class LocalService:
    """One server process: how to start it, where it listens, how to tell it is healthy."""

    name: str
    host: str
    port: int
    run_dir: Path
    log_file: Path
    command: Callable[[], list[str]]
    health: Callable[[], None]
    """Raises when the service does not answer its protocol's ping."""
    prepare: Callable[[], None] = lambda: None
    """One-time setup before the first start (formatting storage, writing config)."""
    extra_ports: tuple[int, ...] = ()
    start_timeout_s: float = 90.0
    stop_timeout_s: float = 30.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def pid(self) -> int | None:
        """The PID of our running process, or None (a stale PID file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def healthy(self) -> tuple[bool, str]:
        try:
            self.health()
        except Exception as exc:  # any failure of the ping means "not healthy", with the reason
            return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return True, "ok"

    def start(self) -> str:
        """Start the process unless ours already runs; wait until it answers. Returns what happened."""
        pid = self.pid()
        if pid is not None:
            self.wait_healthy(pid)
            return f"{self.name}: already running (pid {pid}) on {self.address}"
        for port in (self.port, *self.extra_ports):
            if _port_in_use(self.host, port):
                raise ServiceError(
                    f"{self.name}: port {self.host}:{port} is taken by a process that is not ours "
                    f"(no live PID file at {self.pid_file}); stop it or point recstream at it as an "
                    f"external service. Log: {self.log_file}"
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        started = time.monotonic()
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI; `down` stops it by PID
                env={**os.environ, **self.env},
            )
        self.pid_file.write_text(str(proc.pid))
        self.wait_healthy(proc.pid, proc)
        return f"{self.name}: started (pid {proc.pid}) on {self.address} in {time.monotonic() - started:.1f}s"

    def wait_healthy(self, pid: int, proc: subprocess.Popen | None = None) -> None:
        def check() -> tuple[bool, str]:
            if proc is not None and proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name}: exited with code {proc.returncode} while starting on {self.address}. "
                    f"Log: {self.log_file}\n{_tail(self.log_file)}"
                )
            return self.healthy()

        ok, reason = wait_until(check, lambda answer: answer[0], self.start_timeout_s, 0.25)
        if ok:
            return
        raise ServiceError(
            f"{self.name}: pid {pid} did not answer on {self.address} within {self.start_timeout_s:.0f}s "
            f"({reason}). Log: {self.log_file}\n{_tail(self.log_file)}"
        )

    def stop(self) -> str:
        """Stop our process: SIGTERM, then SIGKILL after the timeout. Leaves others' processes alone."""
        pid = self.pid()
        if pid is None:
            return f"{self.name}: not running"
        os.killpg(pid, signal.SIGTERM)
        forced = wait_until(lambda: _alive(pid), operator.not_, self.stop_timeout_s, 0.1)
        if forced:
            os.killpg(pid, signal.SIGKILL)
            wait_until(lambda: _alive(pid), operator.not_, None, 0.05)  # SIGKILL cannot be refused
        self.pid_file.unlink(missing_ok=True)
        return f"{self.name}: stopped (pid {pid}{', forced' if forced else ''})"


def wait_until(
    check: Callable[[], T], done: Callable[[T], bool], timeout_s: float | None, every_s: float
) -> T:
    """Call `check()` every `every_s` until `done(answer)`, for at most `timeout_s` (None: no limit);
    returns the last answer. An exception from `check` ends the wait."""

    def last_answer(state: RetryCallState) -> T:
        assert state.outcome is not None
        return state.outcome.result()

    return Retrying(
        stop=stop_never if timeout_s is None else stop_after_delay(timeout_s),
        wait=wait_fixed(every_s),
        retry=retry_if_not_result(done),
        retry_error_callback=last_answer,
    )(check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"
