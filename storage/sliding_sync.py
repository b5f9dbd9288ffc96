"""Sliding sync connections (MSC4186): per (user, device, conn_id), the positions handed
out as `pos` and what each position's response had sent of each room. In PostgreSQL, so
a connection survives a restart and any process can serve its next request.

What a connection had sent as of a position never changes once the position is recorded
(its rows at or below it are only ever pruned to the newest per room), so each process
keeps the sent rooms of the positions it last handed out or resumed, and a request that
resumes one of them skips reading them back: a user in 500 rooms had 500 rows read per
request. Another process serving the connection meanwhile hands out other positions,
which are read from the database here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storage.database import Database


@dataclass(slots=True)
class SentRoom:
    sent_upto: int
    membership: str
    config: str


@dataclass
class Position:
    connection_id: int
    pos: int
    tokens: str
    lists: str
    # Shared with the store's cache: never to be changed.
    rooms: Mapping[str, SentRoom]


class UnknownPosition(Exception):
    """The position is not (or no longer) one of this connection's."""


# Sent rooms held over all connections (LRU by connection), each a few hundred bytes.
SENT_CACHE_ROOMS = 100_000

# Using a position ($2) acknowledges it (see resume): the connection's other positions go,
# and so do its rows of answers not taken (above $2) and the rows that those since the
# previous acknowledged position ($4) supersede (each acknowledgement leaves one row per
# room at or below its position, so only rooms sent since then can have two).
_ACKNOWLEDGE = (
    "WITH touched AS (UPDATE sliding_sync_connections SET last_used_ts = $3 WHERE id = $1),"
    " positions AS (DELETE FROM sliding_sync_positions WHERE connection_id = $1 AND pos <> $2),"
    " untaken AS (DELETE FROM sliding_sync_rooms WHERE connection_id = $1 AND pos > $2),"
    # Rooms first, each then probed on its own (a join was planned the other way round on
    # stale statistics: every row of the connection scanned per room, 11 ms).
    " superseded AS (DELETE FROM sliding_sync_rooms o WHERE o.connection_id = $1"
    "   AND o.room_id = ANY(ARRAY(SELECT room_id FROM sliding_sync_rooms"
    "     WHERE connection_id = $1 AND pos > $4 AND pos <= $2))"
    "   AND o.pos < (SELECT max(n.pos) FROM sliding_sync_rooms n"
    "     WHERE n.connection_id = $1 AND n.room_id = o.room_id AND n.pos <= $2))"
)


class _SentCache:
    """connection -> (pos, the rooms it had sent as of pos), bounded by rooms held."""

    def __init__(self, max_rooms: int):
        self.max_rooms = max_rooms
        self._items: OrderedDict[int, tuple[int, Mapping[str, SentRoom]]] = OrderedDict()
        self._rooms = 0

    def get(self, connection_id: int, pos: int) -> Mapping[str, SentRoom] | None:
        held = self._items.get(connection_id)
        if held is None or held[0] != pos:
            return None
        self._items.move_to_end(connection_id)
        return held[1]

    def put(self, connection_id: int, pos: int, rooms: Mapping[str, SentRoom]) -> None:
        held = self._items.pop(connection_id, None)
        if held is not None:
            self._rooms -= len(held[1])
        self._items[connection_id] = (pos, rooms)
        self._rooms += len(rooms)
        while self._rooms > self.max_rooms and len(self._items) > 1:
            _, (_, dropped) = self._items.popitem(last=False)
            self._rooms -= len(dropped)


class SlidingSyncStore:
    def __init__(self, db: Database, sent_cache_rooms: int = SENT_CACHE_ROOMS):
        self.db = db
        self._sent = _SentCache(sent_cache_rooms)

    async def resume(
        self, user_id: str, device_id: str, conn_id: str, pos: int, now_ms: int, min_used_ts: int
    ) -> Position | None:
        """Position `pos` of the connection with what it had sent, or None when the
        connection does not know it (or has not been used since `min_used_ts`).

        Using `pos` acknowledges it: the positions before it are obsolete, and those after
        it are answers the client did not take (a retry, or a long-poll it abandoned when
        it changed its request), whose rooms must not count as sent. Both go now, before
        this request is answered, so an abandoned long-poll that finishes later finds its
        position gone and records nothing."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT p.connection_id, p.tokens, p.lists, (SELECT min(a.pos)"
                " FROM sliding_sync_positions a WHERE a.connection_id = c.id) AS acknowledged"
                " FROM sliding_sync_positions p"
                " JOIN sliding_sync_connections c ON c.id = p.connection_id"
                " WHERE p.pos = $1 AND c.user_id = $2 AND c.device_id = $3 AND c.conn_id = $4"
                " AND c.last_used_ts >= $5 FOR UPDATE OF c",
                pos,
                user_id,
                device_id,
                conn_id,
                min_used_ts,
            )
            if row is None:
                return None
            connection_id, acknowledged = row["connection_id"], row["acknowledged"]
            # A statement of its own after the lock: its snapshot sees an answer recorded
            # while this request waited for the lock, whose rows must go.
            sent = self._sent.get(connection_id, pos)
            if sent is not None:
                await conn.execute(
                    f"{_ACKNOWLEDGE} SELECT 1", connection_id, pos, now_ms, acknowledged
                )
            else:
                # The SELECT reads the snapshot before the DELETEs beside it: rows newer
                # than pos are left out by its WHERE and superseded ones by the order (a
                # room's newest row at or below pos comes last and is the one kept).
                rows = await conn.fetch(
                    f"{_ACKNOWLEDGE} SELECT room_id, sent_upto, membership, config"
                    " FROM sliding_sync_rooms WHERE connection_id = $1 AND pos <= $2"
                    " ORDER BY pos",
                    connection_id,
                    pos,
                    now_ms,
                    acknowledged,
                )
                sent = {room_id: SentRoom(upto, m, c) for room_id, upto, m, c in rows}
        self._sent.put(connection_id, pos, sent)
        return Position(connection_id, pos, row["tokens"], row["lists"], sent)

    async def record(
        self,
        user_id: str,
        device_id: str,
        conn_id: str,
        previous: Position | None,
        tokens: str,
        lists: str,
        sent: Sequence[tuple[str, int, str, str]],
        now_ms: int,
        expired_before: int,
    ) -> int:
        """Stores the position of a response built from `previous` (None: a new connection,
        replacing one of the same conn_id) with the rooms it sent as (room_id, sent_upto,
        membership, config); returns the new pos. Raises UnknownPosition when `previous`
        was dropped meanwhile (a request with a later or the same pos acknowledged it):
        then this answer is one the client has moved past."""
        async with self.db.transaction() as conn:
            if previous is None:
                # The one it replaces, and the user's connections nobody used for the
                # lifetime (their pos is refused already): a new connection is when a
                # client (re)starts, so stale ones never outgrow a user's devices.
                await conn.execute(
                    "DELETE FROM sliding_sync_connections WHERE user_id = $1"
                    " AND ((device_id = $2 AND conn_id = $3) OR last_used_ts < $4)",
                    user_id,
                    device_id,
                    conn_id,
                    expired_before,
                )
                connection_id = await conn.fetchval(
                    "INSERT INTO sliding_sync_connections (user_id, device_id, conn_id,"
                    " created_ts, last_used_ts) VALUES ($1, $2, $3, $4, $4)"
                    " ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET"
                    " created_ts = EXCLUDED.created_ts, last_used_ts = EXCLUDED.last_used_ts"
                    " RETURNING id",
                    user_id,
                    device_id,
                    conn_id,
                    now_ms,
                )
            else:
                connection_id = previous.connection_id
                # The lock orders concurrent requests on one connection.
                found = await conn.fetchval(
                    "SELECT 1 FROM sliding_sync_connections WHERE id = $1 FOR UPDATE",
                    connection_id,
                )
                if found is None:
                    raise UnknownPosition
            rooms, uptos, memberships, configs = zip(*sent, strict=True) if sent else ((),) * 4
            # The position and its rooms in one statement (after the lock, so it sees a
            # `previous` that a request holding the lock meanwhile dropped), written only
            # while `previous` still exists.
            pos = await conn.fetchval(
                "WITH p AS (INSERT INTO sliding_sync_positions"
                "   (connection_id, tokens, lists, created_ts)"
                "   SELECT $1, $2, $3, $4"
                "   WHERE $5::bigint IS NULL"
                "   OR EXISTS (SELECT 1 FROM sliding_sync_positions WHERE pos = $5)"
                "   RETURNING pos),"
                " r AS (INSERT INTO sliding_sync_rooms (connection_id, room_id, pos, sent_upto,"
                "   membership, config) SELECT $1, s.room_id, p.pos, s.sent_upto, s.membership,"
                "   s.config FROM p, unnest($6::text[], $7::bigint[], $8::text[], $9::text[])"
                "   AS s(room_id, sent_upto, membership, config))"
                " SELECT pos FROM p",
                connection_id,
                tokens,
                lists,
                now_ms,
                previous.pos if previous is not None else None,
                list(rooms),
                list(uptos),
                list(memberships),
                list(configs),
            )
            if pos is None:
                raise UnknownPosition
        as_of: dict[str, SentRoom] = dict(previous.rooms) if previous is not None else {}
        as_of.update((r, SentRoom(upto, m, c)) for r, upto, m, c in sent)
        self._sent.put(connection_id, pos, as_of)
        return pos
