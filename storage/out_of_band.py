"""Local users' memberships in rooms this server is not in (see migration 0620)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from storage.database import Database
from storage.streams import Streams


@dataclass(frozen=True)
class OutOfBandMembership:
    room_id: str
    membership: str
    event_id: str
    stream_ordering: int
    room_version: str
    stripped_state: list[dict[str, Any]]


def _row(r) -> OutOfBandMembership:
    return OutOfBandMembership(
        r["room_id"],
        r["membership"],
        r["event_id"],
        r["stream_ordering"],
        r["room_version"],
        orjson.loads(r["stripped_state"]) if r["stripped_state"] else [],
    )


_COLUMNS = "room_id, membership, event_id, stream_ordering, room_version, stripped_state"


class OutOfBandStore:
    def __init__(self, db: Database, streams: Streams):
        self.db = db
        self.streams = streams

    async def record(
        self,
        user_id: str,
        room_id: str,
        membership: str,
        event_id: str,
        room_version: str,
        stripped_state: list[dict[str, Any]] | None,
    ) -> int:
        """Records the user's latest membership at a new events-stream position (their
        /sync wakes for it); returns the position."""
        state = orjson.dumps(stripped_state).decode() if stripped_state is not None else None
        async with self.streams.write("events", 1) as w:
            await w.conn.execute(
                "INSERT INTO out_of_band_memberships (user_id, room_id, membership, event_id,"
                " stream_ordering, room_version, stripped_state)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (user_id, room_id) DO UPDATE SET membership = EXCLUDED.membership,"
                " event_id = EXCLUDED.event_id, stream_ordering = EXCLUDED.stream_ordering,"
                " room_version = EXCLUDED.room_version,"
                " stripped_state = COALESCE(EXCLUDED.stripped_state,"
                " out_of_band_memberships.stripped_state)",
                user_id,
                room_id,
                membership,
                event_id,
                w.first,
                room_version,
                state,
            )
            w.wake(users=[user_id])
        return w.first

    async def get(self, user_id: str, room_id: str) -> OutOfBandMembership | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM out_of_band_memberships WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )
        return _row(row) if row else None

    async def for_user(self, user_id: str) -> dict[str, OutOfBandMembership]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM out_of_band_memberships WHERE user_id = $1", user_id
        )
        return {r["room_id"]: _row(r) for r in rows}

    async def changed(self, user_id: str, after: int, upto: int) -> list[OutOfBandMembership]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM out_of_band_memberships WHERE user_id = $1"
            " AND stream_ordering > $2 AND stream_ordering <= $3",
            user_id,
            after,
            upto,
        )
        return [_row(r) for r in rows]

    async def forget(self, user_id: str, room_id: str) -> None:
        """Drops the row once the server has joined the room (its state is now the truth)."""
        await self.db.execute(
            "DELETE FROM out_of_band_memberships WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )
