"""The scheduled-task runner: each task runs in one process at a time, once per period
across every process that shares the database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from storage.housekeeping import HousekeepingStore

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Task:
    name: str
    period_s: float
    # Called with the time of the run (ms); returns how much it did, for the log.
    run: Callable[[int], Awaitable[int]]


class Busy:
    """What run_task answers when another process (or coroutine) holds the task's lock."""

    def __repr__(self) -> str:
        return "BUSY"


class NotDue:
    """What run_task answers when the task ran anywhere less than a period ago."""

    def __repr__(self) -> str:
        return "NOT_DUE"


BUSY = Busy()
NOT_DUE = NotDue()


class HousekeepingRunner:
    def __init__(self, store: HousekeepingStore, tasks: Sequence[Task], tick_s: float):
        self.store = store
        self.tasks = {t.name: t for t in tasks}
        self.tick_s = tick_s
        self._loop: asyncio.Task | None = None

    async def run_once(self, at_ms: int | None = None) -> dict[str, int | Busy | NotDue]:
        """Runs every task that is due, one after the other; what each did."""
        at = now_ms() if at_ms is None else at_ms
        return {name: await self.run_task(name, at, force=False) for name in self.tasks}

    async def run_task(
        self, name: str, at_ms: int | None = None, *, force: bool = True
    ) -> int | Busy | NotDue:
        """Runs one task now if no one else is running it; unless `force`, only if it is
        due. The lock is taken before the due check, so two processes cannot both find the
        task due and both run it."""
        task = self.tasks[name]
        at = now_ms() if at_ms is None else at_ms
        if not force and not self._due(task, await self.store.last_run(name), at):
            return NOT_DUE  # most ticks: no lock taken at all
        async with self.store.task_lock(name) as locked:
            if not locked:
                return BUSY
            if not force and not self._due(task, await self.store.last_run(name), at):
                return NOT_DUE
            try:
                done = await task.run(at)
            except Exception:
                # Recorded as run all the same: a failing task is retried next period, not
                # at every tick.
                logger.exception("housekeeping task %s failed", name)
                done = 0
            await self.store.record_run(name, at)
        if done:
            logger.info("housekeeping task %s: %d", name, done)
        return done

    @staticmethod
    def _due(task: Task, last_run_ms: int | None, at_ms: int) -> bool:
        return last_run_ms is None or at_ms - last_run_ms >= task.period_s * 1000

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._loop)
        self._loop = None

    async def _run_forever(self) -> None:
        while True:
            # Sleep first: a process starting (or a test server) does no work at once.
            await asyncio.sleep(self.tick_s)
            try:
                await self.run_once()
            except Exception:
                # A lost database connection, say: try again next tick.
                logger.exception("housekeeping tick failed")


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancels a background loop and waits until it has stopped."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
