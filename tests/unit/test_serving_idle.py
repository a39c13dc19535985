"""A worker's serving state refreshes while its views use it, pauses when they stop, and refreshes once
before the next view serves from it (`ServingState.start(idle_after_s)`, `ready`)."""

import asyncio

from recstream.serving.state import ServingState
from recstream.settings import Settings


async def test_refreshing_pauses_when_unused_and_resumes_before_the_next_view() -> None:
    state = ServingState(Settings(serving_refresh_interval_s=0.01), None)
    refreshes: list[int] = []

    async def refresh() -> None:  # what Redis would give does not matter here: only when it runs
        refreshes.append(1)
        state.loaded.set()

    state.refresh = refresh  # type: ignore[method-assign]
    try:
        state.start(idle_after_s=0.2)
        await state.ready()
        await asyncio.sleep(0.1)
        assert len(refreshes) >= 3  # used a moment ago: refreshing
        await asyncio.sleep(0.4)
        paused_at = len(refreshes)
        await asyncio.sleep(0.2)
        assert len(refreshes) == paused_at  # nobody served from it for 0.2 s: paused
        await state.ready()
        assert len(refreshes) == paused_at + 1  # a view: one refresh before it serves
        await asyncio.sleep(0.1)
        assert len(refreshes) >= paused_at + 3  # and refreshing again
    finally:
        await state.close()


async def test_without_idle_it_never_pauses() -> None:
    state = ServingState(Settings(serving_refresh_interval_s=0.01), None)
    refreshes: list[int] = []

    async def refresh() -> None:
        refreshes.append(1)
        state.loaded.set()

    state.refresh = refresh  # type: ignore[method-assign]
    try:
        state.start()
        await asyncio.sleep(0.5)
        assert len(refreshes) >= 20
    finally:
        await state.close()
