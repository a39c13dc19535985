"""What a worker process sets up for itself before its agents start: the collector off, and a GIL
switch interval short enough that the Kafka consumer's thread is not starved by the agents."""

from __future__ import annotations

import gc
import sys

import faust
import pytest


@pytest.fixture
def _restore_interpreter():  # noqa: ANN202
    interval, enabled = sys.getswitchinterval(), gc.isenabled()
    yield
    sys.setswitchinterval(interval)
    if enabled:
        gc.enable()


@pytest.mark.usefixtures("_restore_interpreter")
def test_a_worker_lets_the_consumer_thread_take_the_gil_within_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from recstream.streaming.app import app

    monkeypatch.setattr(faust.App, "worker_init", lambda self: None)  # Faust's own part is not ours to test
    sys.setswitchinterval(0.005)  # Python's default
    app.worker_init()
    assert sys.getswitchinterval() == pytest.approx(app.recstream_settings.gil_switch_interval_ms / 1000)
    assert sys.getswitchinterval() == pytest.approx(0.0005)  # the default: 10x shorter than Python's
    assert not gc.isenabled()
