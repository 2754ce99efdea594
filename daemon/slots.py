"""Subagent slots: how many subagents of one session run at once.

Each subagent holds a slot from its start until it settles (done, failed or vetoed);
a parent waiting on its own children gives its slot back meanwhile, so nested spawns
cannot starve each other. `take` and `give_back` are per agent, so a slot is never
given back twice.
"""

from __future__ import annotations

import asyncio


class SlotPool:
    def __init__(self, size: int) -> None:
        self._free = asyncio.Semaphore(size)
        self._holders: set[str] = set()

    async def take(self, agent: str) -> None:
        if agent not in self._holders:
            await self._free.acquire()
            self._holders.add(agent)

    def give_back(self, agent: str) -> None:
        if agent in self._holders:
            self._holders.discard(agent)
            self._free.release()
