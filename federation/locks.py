"""Locks by key (a user, an origin server) that disappear when nobody holds or awaits
them, so that the table does not grow with every key ever seen."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from contextlib import asynccontextmanager


class KeyedLocks:
    def __init__(self):
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable):
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._locks.pop(key, None)
