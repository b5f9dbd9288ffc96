"""Receivers holding /sync long-polls, and the time a message takes to reach them.

Each receiver loops on /sync?since=...&timeout=... exactly as a client does and
stamps the arrival of every marked message. The latency of a delivery is from
just before the sender's PUT to the moment the receiver's response is read,
so it covers the send, persistence, the wake-up and the /sync response.
"""

from __future__ import annotations

import asyncio
import time

from bench.client import User, timeline_events
from bench.scenarios.base import run_pool

MARK = "bench_seq"
LONGPOLL_MS = 50_000


class Receivers:
    def __init__(
        self,
        users: list[User],
        room_id: str,
        filter_json: str,
        presence: str | None,
        longpoll_ms: int = LONGPOLL_MS,
    ):
        self.users = users
        self.longpoll_ms = longpoll_ms
        self.room_id = room_id
        self.filter_json = filter_json
        self.presence = presence
        self.sent_at: dict[int, float] = {}
        self.latencies: dict[int, list[float]] = {}
        self._waiters: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self.polls_started = 0
        self.errors: list[str] = []

    async def initial_sync(self, concurrency: int) -> list[float]:
        """Gives every receiver a `since` token; returns the initial syncs' seconds."""
        durations: list[float] = []

        async def one(i: int) -> None:
            resp = await self.users[i].sync(
                filter_json=self.filter_json, set_presence=self.presence
            )
            self.users[i].since = resp.body["next_batch"]
            durations.append(resp.seconds)

        await run_pool(len(self.users), concurrency, one)
        return durations

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._listen(u)) for u in self.users]

    async def start_gradually(self, batch: int, pause_s: float) -> None:
        """start(), `batch` long-polls at a time: thousands of connects at once would
        overflow the server's listen backlog and measure SYN retries instead."""
        for i in range(0, len(self.users), batch):
            self._tasks += [
                asyncio.ensure_future(self._listen(u)) for u in self.users[i : i + batch]
            ]
            await asyncio.sleep(pause_s)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self, user: User) -> None:
        try:
            await self._poll_forever(user)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a dead receiver shows up as missing deliveries
            self.errors.append(f"{type(e).__name__}: {e}")

    async def _poll_forever(self, user: User) -> None:
        while True:
            self.polls_started += 1
            resp = await user.sync(
                since=user.since,
                timeout_ms=self.longpoll_ms,
                filter_json=self.filter_json,
                set_presence=self.presence,
            )
            arrived = time.perf_counter()
            user.since = resp.body["next_batch"]
            for event in timeline_events(resp.body, self.room_id):
                seq = event.get("content", {}).get(MARK)
                if isinstance(seq, int) and seq in self.sent_at:
                    self._arrived(seq, arrived)

    def _arrived(self, seq: int, at: float) -> None:
        got = self.latencies.setdefault(seq, [])
        got.append(at - self.sent_at[seq])
        if len(got) >= len(self.users):
            self._waiters[seq].set()

    async def send_and_wait(self, sender: User, seq: int, timeout_s: float) -> int:
        """Sends marked message `seq`; returns how many receivers did not get it in time."""
        self._waiters[seq] = asyncio.Event()
        self.sent_at[seq] = time.perf_counter()
        await sender.send_text(self.room_id, f"latency probe {seq}", **{MARK: seq})
        try:
            await asyncio.wait_for(self._waiters[seq].wait(), timeout_s)
        except TimeoutError:
            pass
        return len(self.users) - len(self.latencies.get(seq, []))

    def all_latencies(self) -> list[float]:
        return [x for per_seq in self.latencies.values() for x in per_seq]
