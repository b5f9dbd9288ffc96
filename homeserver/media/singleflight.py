"""One piece of work per key at a time: concurrent callers share the result.

Used where many clients ask for the same thing at once (a remote file, a URL preview)
and doing it once is both cheaper and kinder to the remote end. The work runs as its
own task, so one caller giving up (a client disconnecting) does not cancel it for the
others; it finishes and its result is cached by the work itself.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable
from typing import Any


class SingleFlight:
    def __init__(
        self,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task] = asyncio.ensure_future,
    ):
        self._spawn = spawn
        self._tasks: dict[Hashable, asyncio.Task] = {}
        self._waiting: Counter = Counter()

    def waiting(self, key: Hashable) -> int:
        """How many callers are waiting on `key` right now (for tests and metrics)."""
        return self._waiting[key]

    async def run(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        task = self._tasks.get(key)
        if task is None:
            task = self._spawn(work())
            self._tasks[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        self._waiting[key] += 1
        try:
            return await asyncio.shield(task)
        finally:
            self._waiting[key] -= 1
            if self._waiting[key] <= 0:
                del self._waiting[key]

    def _finished(self, key: Hashable, task: asyncio.Task) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: no warning when every caller had gone
