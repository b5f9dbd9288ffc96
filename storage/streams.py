"""Stream positions that never skip, and the wake-up that follows every commit.

A write to a stream runs in one transaction that first bumps the stream's row in
`stream_positions`. That row lock is held until commit, so writers to one stream commit
in position order: once position N is visible, every position below it is too. The
same transaction queues a NOTIFY, which PostgreSQL delivers at commit, in commit order,
to every process; the committing process also hands the change to its own callback at
once, so a client that wrote something reads it back on its next request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson

from storage.database import NOTIFY_CHANNEL, Database

STREAMS = (
    "events",
    "to_device",
    "device_lists",
    "receipts",
    "account_data",
    "typing",
    "presence",
)

# PostgreSQL refuses NOTIFY payloads over 8000 bytes; past this we wake every listener.
_MAX_PAYLOAD = 7900


@dataclass
class StreamChange:
    stream: str
    position: int
    rooms: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    # True when the payload was too large to list who is concerned: wake everyone.
    everyone: bool = False
    # True when the change was committed by another process.
    remote: bool = False


@dataclass
class StreamWrite:
    conn: object
    stream: str
    first: int
    last: int
    rooms: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    @property
    def positions(self) -> range:
        return range(self.first, self.last + 1)

    def wake(self, rooms: Iterable[str] = (), users: Iterable[str] = ()) -> None:
        self.rooms.update(rooms)
        self.users.update(users)


def encode_change(instance: str, change: StreamChange) -> str:
    payload = orjson.dumps(
        {
            "i": instance,
            "s": change.stream,
            "p": change.position,
            "r": sorted(change.rooms),
            "u": sorted(change.users),
        }
    ).decode()
    if len(payload) > _MAX_PAYLOAD:
        payload = orjson.dumps(
            {"i": instance, "s": change.stream, "p": change.position, "all": True}
        ).decode()
    return payload


def decode_change(payload: str) -> tuple[str, StreamChange]:
    data = orjson.loads(payload)
    return data["i"], StreamChange(
        stream=data["s"],
        position=data["p"],
        rooms=set(data.get("r", ())),
        users=set(data.get("u", ())),
        everyone=bool(data.get("all")),
    )


class Streams:
    def __init__(self, db: Database, on_change: Callable[[StreamChange], None]):
        self.db = db
        self.instance = uuid.uuid4().hex[:12]
        self.on_change = on_change
        # The highest position of each stream this process has been told about.
        self._seen: dict[str, int] = {}

    async def current_positions(self) -> dict[str, int]:
        """Every stream's committed position (and from now on, the positions seen)."""
        rows = await self.db.fetch("SELECT stream, pos FROM stream_positions")
        positions = {r["stream"]: r["pos"] for r in rows}
        for stream, pos in positions.items():
            self._seen[stream] = max(self._seen.get(stream, 0), pos)
        return positions

    async def resync(self) -> None:
        """After the LISTEN connection was lost and reopened: what other processes
        committed meanwhile was never notified. Each stream that moved past what we saw
        is announced as a change that concerns everyone (we cannot know whom), which
        wakes every waiting /sync and invalidates what is cached from before."""
        seen = dict(self._seen)
        for stream, pos in (await self.current_positions()).items():
            if pos > seen.get(stream, 0):
                self.on_change(StreamChange(stream, pos, everyone=True, remote=True))

    def _saw(self, change: StreamChange) -> None:
        if change.position > self._seen.get(change.stream, 0):
            self._seen[change.stream] = change.position

    @asynccontextmanager
    async def write(self, stream: str, count: int = 1, conn=None):
        """Opens a transaction holding `count` new positions of `stream`.

        The caller inserts its rows with `w.positions` and names who should wake with
        `w.wake(rooms=..., users=...)`.
        """
        if conn is None:
            async with self.db.acquire() as acquired:
                async with self.write(stream, count, acquired) as w:
                    yield w
            return
        if conn.is_in_transaction():
            # The notifier is told when this block ends; inside an outer transaction that is
            # before the commit, and a reader could skip rows it cannot see yet.
            raise RuntimeError("a stream write must be the outermost transaction")
        async with conn.transaction():
            last = await conn.fetchval(
                "UPDATE stream_positions SET pos = pos + $2 WHERE stream = $1 RETURNING pos",
                stream,
                count,
            )
            w = StreamWrite(conn, stream, last - count + 1, last)
            yield w
            change = StreamChange(stream, last, w.rooms, w.users)
            await conn.execute(
                "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, encode_change(self.instance, change)
            )
        self._saw(change)
        self.on_change(change)

    def on_notify(self, payload: str) -> None:
        instance, change = decode_change(payload)
        if instance != self.instance:
            change.remote = True
            self._saw(change)
            self.on_change(change)
