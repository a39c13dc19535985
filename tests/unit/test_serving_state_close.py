"""A serving state's refresh loop ends on close, even when a cancellation is lost on the way."""

from __future__ import annotations

import asyncio

from recstream.serving.state import ServingState
from recstream.settings import Settings


async def test_close_ends_the_refresh_loop_even_when_a_cancellation_is_lost() -> None:
    state = ServingState(Settings())
    swallowed: list[int] = []

    async def refresh() -> None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            # What `asyncio.wait_for` in a client library does (Python 3.11) when the call it waits for
            # finishes at the moment it is cancelled: the cancellation is gone.
            swallowed.append(1)

    state.refresh = refresh  # type: ignore[method-assign]
    task = state._task = asyncio.get_running_loop().create_task(state._run())
    await asyncio.sleep(0.01)  # inside refresh
    closing = asyncio.ensure_future(state.close())
    await asyncio.wait({closing}, timeout=3)  # not wait_for: its own cancellation would end the loop
    try:
        assert closing.done(), "close() still waiting: before the fix a worker waited until killed (30 s)"
        assert swallowed and task.done() and state._task is None
    finally:
        closing.cancel()
        task.cancel()
