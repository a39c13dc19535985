"""The wait-until-ready loops (tenacity underneath): what they return, when they give up, and that a
failure the check reports ends the wait at once."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recstream.devtools.devcluster import wait_for
from recstream.devtools.services.process import LocalService, ServiceError


def test_wait_for_returns_the_first_truthy_value_or_the_last_on_timeout() -> None:
    answers = iter([None, [], {"ready": True}])
    assert wait_for(lambda: next(answers), timeout=5, interval=0.01) == {"ready": True}
    started = time.monotonic()
    assert wait_for(lambda: [], timeout=0.2, interval=0.05) == []
    assert 0.2 <= time.monotonic() - started < 2


def test_wait_for_lets_an_error_of_the_check_through() -> None:
    calls = itertools.count(1)

    def check() -> bool:
        if next(calls) == 2:
            raise KeyError("gone")
        return False

    with pytest.raises(KeyError):
        wait_for(check, timeout=5, interval=0.01)


def service(tmp_path: Path, health, **kw) -> LocalService:  # noqa: ANN001
    return LocalService(
        name="fake",
        host="127.0.0.1",
        port=1,
        run_dir=tmp_path,
        log_file=tmp_path / "fake.log",
        command=lambda: [sys.executable, "-c", "import time; time.sleep(60)"],
        health=health,
        **kw,
    )


def test_a_service_is_waited_for_until_healthy_or_its_timeout(tmp_path: Path) -> None:
    pings = itertools.count(1)

    def health() -> None:
        if next(pings) < 3:
            raise ConnectionRefusedError("not yet")

    service(tmp_path, health).wait_healthy(pid=1)
    assert next(pings) == 4  # healthy at the third ping, then no more

    def never() -> None:
        raise ConnectionRefusedError("port closed")

    with pytest.raises(
        ServiceError, match=r"did not answer on 127.0.0.1:1 within 0s \(ConnectionRefusedError: port"
    ):
        service(tmp_path, never, start_timeout_s=0.3).wait_healthy(pid=1)


def test_a_service_that_exits_while_starting_fails_at_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    fake = service(tmp_path, lambda: None, start_timeout_s=60)
    fake.pid_file.write_text(str(proc.pid))
    started = time.monotonic()
    with pytest.raises(ServiceError, match="exited with code 3 while starting"):
        fake.wait_healthy(proc.pid, proc)
    assert time.monotonic() - started < 5 and not fake.pid_file.exists()


def test_stop_waits_for_the_process_and_forces_it_after_the_timeout(tmp_path: Path) -> None:
    polite = service(tmp_path, lambda: None)
    proc = subprocess.Popen(polite.command(), start_new_session=True)
    polite.pid_file.write_text(str(proc.pid))
    assert polite.stop() == f"fake: stopped (pid {proc.pid})"
    proc.wait(5)

    stubborn = service(tmp_path, lambda: None, stop_timeout_s=0.3)
    ignores_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", ignores_term], start_new_session=True, stdout=subprocess.PIPE
    )
    proc.stdout.readline()  # its handler is in place
    stubborn.pid_file.write_text(str(proc.pid))
    assert stubborn.stop() == f"fake: stopped (pid {proc.pid}, forced)"
    assert proc.wait(5) == -9 and not stubborn.pid_file.exists()
