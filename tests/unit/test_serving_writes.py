"""When an agent writes what serving reads: the bounded share under a backlog, the interval once the
backlog is over (`agents.pipeline.write_due`)."""

from recstream.agents.pipeline import QUIET_S, write_due


def test_a_write_is_due_once_the_shares_wait_has_passed() -> None:
    # Batches still coming (the last one just ended): only the share's wait counts.
    assert not write_due(now=10.0, next_write=12.0, written_at=9.0, last_batch=10.0, interval_s=1.0)
    assert write_due(now=12.0, next_write=12.0, written_at=9.0, last_batch=12.0, interval_s=1.0)


def test_with_the_backlog_over_the_interval_rules_not_the_share() -> None:
    # The last write took long (next one 9x that away); batches stopped QUIET_S ago: due at the interval.
    last_batch = 20.0
    now = last_batch + QUIET_S
    assert write_due(now=now, next_write=30.0, written_at=19.0, last_batch=last_batch, interval_s=1.0)
    # Quiet, but the interval since the last write has not passed: not yet.
    assert not write_due(
        now=now, next_write=30.0, written_at=now - 0.5, last_batch=last_batch, interval_s=1.0
    )
    # Not quiet for long enough yet: the share still rules.
    assert not write_due(
        now=last_batch + QUIET_S / 2, next_write=30.0, written_at=19.0, last_batch=last_batch, interval_s=1.0
    )
