"""Identical reads asked at once, or shortly after one another, run once.

One message to a big room wakes every member's /sync, and each asks the database the
same questions: the room's timeline after the same token up to the same position, its
senders' member events, whether those events have relations, what arrived since the
unread counts were last counted. Keys name everything an answer depends on, the stream
position it reads up to included, so an answer is never stale for its key; entries still
expire after `ttl_s`, so that a change which does not move a stream position (an event
expiring, say) is not hidden for longer than that.

Callers share the answer objects: they must not change them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class SharedReads:
    def __init__(self, size: int = 4096, ttl_s: float = 10.0):
        self.size = size
        self.ttl_s = ttl_s
        self._done: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        while True:
            done = self._done.get(key)
            if done is not None:
                if done[0] > time.monotonic():
                    return done[1]
                del self._done[key]
            pending = self._pending.get(key)
            if pending is None:
                break
            try:
                # Shielded: a waiter's cancellation must not cancel the others' answer.
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The reader that ran it was cancelled: read again ourselves.
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            del self._pending[key]
        future.set_result(value)
        self._done[key] = (time.monotonic() + self.ttl_s, value)
        while len(self._done) > self.size:
            self._done.popitem(last=False)
        return value
