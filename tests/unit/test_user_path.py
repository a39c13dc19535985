"""The user-facing path first: downstream agents step aside during a history batch, and defer to the
history agent's backlog (`backlog` events or more waiting), never to the trickle of live traffic."""

from __future__ import annotations

import asyncio

from recstream.agents.common import UserPath


def test_downstream_defers_to_a_history_batch_and_to_a_full_batch_waiting() -> None:
    async def main() -> None:
        path, queue, done = UserPath(), asyncio.Queue(), []
        path.watch(queue, backlog=3)

        async def downstream() -> None:
            for i in range(3):
                await path.defer()
                done.append(i)

        for i in range(3):
            queue.put_nowait(i)  # a backlog waiting: downstream holds back
        task = asyncio.create_task(downstream())
        await asyncio.sleep(0.03)
        assert done == []
        with path.running():  # history takes it: while the batch runs, downstream still steps aside
            while queue.qsize():
                queue.get_nowait()
            queue.put_nowait("a live event")  # less than a batch: no backlog
            await asyncio.sleep(0.03)
            assert done == []
        await asyncio.wait_for(task, 1)  # history idle, one event waiting: downstream goes on
        assert done == [0, 1, 2]

    asyncio.run(main())
