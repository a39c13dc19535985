"""A worker at `--loglevel warn` keeps its root logger at WARN (Faust's spinner would set it to DEBUG)."""

from __future__ import annotations

import logging

import faust
import pytest


@pytest.fixture
def root() -> logging.Logger:
    logger = logging.getLogger()
    level, handlers = logger.level, list(logger.handlers)
    logger.addHandler(logging.NullHandler())  # Faust's spinner set-up adjusts the first handler
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_faust_alone_would_turn_debug_records_on_at_warn(root: logging.Logger) -> None:
    """The trap, pinned on faust-streaming 0.15.3: if this stops failing, our override can go."""
    from recstream.streaming.app import app

    faust.Worker(app, loglevel="warn").on_setup_root_logger(root, logging.WARNING)
    assert root.level == logging.DEBUG


def test_our_worker_keeps_the_level_asked_for(root: logging.Logger) -> None:
    from recstream.streaming.app import Worker, app

    assert app.conf.Worker is Worker
    root.setLevel(logging.WARNING)
    handlers = list(root.handlers)
    Worker(app, loglevel="warn").on_setup_root_logger(root, logging.WARNING)
    assert root.level == logging.WARNING and root.handlers == handlers
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
