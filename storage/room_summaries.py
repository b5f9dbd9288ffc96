"""Room-list summaries (sliding sync's room list, and any list view): one row per room
(name, avatar, encryption, type, member counts, bump stamp) and one per local user and
room (membership), written in the transaction that persists the events (`apply`), so a
room list is one query, never state recomputed per room per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from storage.database import Database
from storage.events import PersistItem
from storage.membership import MEMBER_EVENTS_SQL, MEMBERS_SQL

# Events that move a room up a room list (Synapse's defaults, which Element X expects):
# reactions, edits, receipts and state changes other than creation do not.
BUMP_EVENT_TYPES = frozenset(
    {
        "m.room.create",
        "m.room.message",
        "m.room.encrypted",
        "m.sticker",
        "m.call.invite",
        "m.poll.start",
        "m.beacon_info",
    }
)
# A current state event's JSON: state learnt when joining over federation is held outside
# the timeline (event_outliers), the rest in events.
_STATE_EVENTS = (
    "LEFT JOIN events e ON e.event_id = c.event_id"
    " LEFT JOIN event_outliers o ON o.event_id = c.event_id"
)
_STATE_JSON = "COALESCE(e.json, o.json) AS json"
# The state a room summary is derived from.
_SUMMARY_STATE = ("m.room.name", "m.room.avatar", "m.room.encryption", "m.room.create")


@dataclass(slots=True)
class UserRoom:
    room_id: str
    membership: str
    event_id: str
    sender: str
    ordering: int
    is_direct: bool
    # From the room's summary row; None for a room we hold no events of (an invite
    # received over federation to a room not known here).
    bump_stamp: int | None
    last_ordering: int | None
    name: str | None
    avatar: str | None
    encrypted: bool
    room_type: str | None
    joined_count: int
    invited_count: int


def _text(content: dict[str, Any], key: str) -> str | None:
    """A string field of event content; None if absent, not a string, or carrying U+0000
    (which event JSON may hold escaped but a text column refuses)."""
    value = content.get(key)
    return value if isinstance(value, str) and "\x00" not in value else None


class RoomSummaryStore:
    def __init__(self, db: Database, is_local: Callable[[str], bool]):
        self.db = db
        self.is_local = is_local

    # ---- writing, inside the persisting transaction ---------------------------------------

    async def apply(self, conn, items: Sequence[PersistItem]) -> None:
        """Brings the summaries of the batch's rooms up to date. Runs after the events and
        current state of `items` are written, in the same transaction."""
        bumps: dict[str, tuple[int, int]] = {}
        state_rooms: set[str] = set()
        member_rooms: set[str] = set()
        members: dict[tuple[str, str], tuple[str, str, str, int, bool]] = {}
        delta_members: set[tuple[str, str]] = set()
        for it in items:
            room_id, etype = it.room_id, it.event["type"]
            bump, last = bumps.get(room_id, (0, 0))
            if etype in BUMP_EVENT_TYPES:
                bump = it.stream_ordering
            bumps[room_id] = (bump, max(last, it.stream_ordering))
            if it.redacts is not None:
                state_rooms.add(room_id)  # a redacted name or avatar is gone
            if it.current_state_delta is not None:
                # State resolution changed current state beyond this event: re-read it.
                state_rooms.add(room_id)
                for t, sk, _, _ in it.current_state_delta:
                    if t == "m.room.member":
                        member_rooms.add(room_id)
                        if self.is_local(sk):
                            delta_members.add((sk, room_id))
                continue
            state_key = it.event.get("state_key")
            if state_key is None:
                continue
            if etype in _SUMMARY_STATE and state_key == "":
                state_rooms.add(room_id)
            elif etype == "m.room.member":
                member_rooms.add(room_id)
                if self.is_local(state_key):
                    content = it.event.get("content") or {}
                    membership = content.get("membership")
                    if isinstance(membership, str):
                        members[(state_key, room_id)] = (
                            membership,
                            it.event_id,
                            it.event["sender"],
                            it.stream_ordering,
                            membership == "invite" and content.get("is_direct") is True,
                        )
        await conn.executemany(
            "INSERT INTO room_summaries (room_id, bump_stamp, last_ordering) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id) DO UPDATE SET"
            " bump_stamp = GREATEST(room_summaries.bump_stamp, EXCLUDED.bump_stamp),"
            " last_ordering = GREATEST(room_summaries.last_ordering, EXCLUDED.last_ordering)",
            [(r, b, last) for r, (b, last) in bumps.items()],
        )
        if state_rooms:
            await self._refresh_state(conn, sorted(state_rooms))
        if member_rooms:
            await conn.execute(
                "UPDATE room_summaries s SET"
                f" joined_count = (SELECT count(*) FROM ({MEMBERS_SQL}) m"
                "   WHERE m.room_id = s.room_id AND m.membership = 'join'),"
                f" invited_count = (SELECT count(*) FROM ({MEMBERS_SQL}) m"
                "   WHERE m.room_id = s.room_id AND m.membership = 'invite')"
                " WHERE s.room_id = ANY($1::text[])",
                sorted(member_rooms),
            )
        delta_members -= members.keys()
        if members:
            await conn.executemany(
                "INSERT INTO user_room_summaries (user_id, room_id, membership, event_id, sender,"
                " ordering, is_direct) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (user_id, room_id) DO UPDATE SET membership = EXCLUDED.membership,"
                " event_id = EXCLUDED.event_id, sender = EXCLUDED.sender,"
                " ordering = EXCLUDED.ordering, is_direct = EXCLUDED.is_direct",
                [(u, r, *v) for (u, r), v in members.items()],
            )
        if delta_members:
            await self._refresh_members(conn, delta_members)

    async def _refresh_state(self, conn, room_ids: list[str]) -> None:
        rows = await conn.fetch(
            f"SELECT c.room_id, c.type, {_STATE_JSON} FROM current_state c {_STATE_EVENTS}"
            " WHERE c.room_id = ANY($1::text[]) AND c.type = ANY($2::text[]) AND c.state_key = ''",
            room_ids,
            list(_SUMMARY_STATE),
        )
        found: dict[str, dict[str, dict]] = {r: {} for r in room_ids}
        for row in rows:
            if row["json"] is None:
                continue  # an entry whose event we do not hold
            content = orjson.loads(row["json"]).get("content")
            found[row["room_id"]][row["type"]] = content if isinstance(content, dict) else {}
        await conn.executemany(
            "UPDATE room_summaries SET name = $2, avatar = $3, encrypted = $4, room_type = $5"
            " WHERE room_id = $1",
            [
                (
                    room_id,
                    _text(state.get("m.room.name", {}), "name") or None,
                    _text(state.get("m.room.avatar", {}), "url") or None,
                    "m.room.encryption" in state,
                    _text(state.get("m.room.create", {}), "type"),
                )
                for room_id, state in found.items()
            ],
        )

    async def _refresh_members(self, conn, pairs: Iterable[tuple[str, str]]) -> None:
        users, rooms = zip(*sorted(pairs), strict=True)
        await conn.execute(
            "INSERT INTO user_room_summaries (user_id, room_id, membership, event_id, sender,"
            " ordering) SELECT c.user_id, c.room_id, c.membership, c.event_id, e.sender,"
            " e.stream_ordering FROM unnest($1::text[], $2::text[]) AS p(user_id, room_id)"
            f" JOIN ({MEMBER_EVENTS_SQL}) c ON c.room_id = p.room_id AND c.user_id = p.user_id"
            " JOIN events e ON e.event_id = c.event_id WHERE c.membership IS NOT NULL"
            " ON CONFLICT (user_id, room_id) DO UPDATE SET membership = EXCLUDED.membership,"
            " event_id = EXCLUDED.event_id, sender = EXCLUDED.sender,"
            " ordering = EXCLUDED.ordering, is_direct = FALSE",
            list(users),
            list(rooms),
        )

    # ---- reading --------------------------------------------------------------------------

    async def user_rooms(
        self, user_id: str, room_ids: Sequence[str] | None = None
    ) -> list[UserRoom]:
        """Every room the user has a membership in (or those of `room_ids` they have
        one in), with its summary. One query."""
        rows = await self.db.fetch(
            "SELECT u.room_id, u.membership, u.event_id, u.sender, u.ordering, u.is_direct,"
            " s.bump_stamp, s.last_ordering, s.name, s.avatar, COALESCE(s.encrypted, FALSE)"
            " AS encrypted, s.room_type, COALESCE(s.joined_count, 0) AS joined_count,"
            " COALESCE(s.invited_count, 0) AS invited_count"
            " FROM user_room_summaries u LEFT JOIN room_summaries s ON s.room_id = u.room_id"
            " WHERE u.user_id = $1 AND ($2::text[] IS NULL OR u.room_id = ANY($2::text[]))",
            user_id,
            list(room_ids) if room_ids is not None else None,
        )
        # Positional: the columns are selected in the order of UserRoom's fields.
        return [UserRoom(*r) for r in rows]

    async def member_contents(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(room, user) -> content of the user's current member event in the room."""
        pairs = list(pairs)
        if not pairs:
            return {}
        rows = await self.db.fetch(
            f"SELECT c.room_id, c.user_id, {_STATE_JSON} FROM unnest($1::text[], $2::text[])"
            f" AS p(room_id, user_id) JOIN ({MEMBER_EVENTS_SQL}) c ON c.room_id = p.room_id"
            f" AND c.user_id = p.user_id {_STATE_EVENTS}",
            [r for r, _ in pairs],
            [u for _, u in pairs],
        )
        out = {}
        for row in rows:
            if row["json"] is None:
                continue
            content = orjson.loads(row["json"]).get("content")
            out[(row["room_id"], row["user_id"])] = content if isinstance(content, dict) else {}
        return out

    async def current_state_ids(
        self,
        room_ids: Sequence[str],
        pairs: Sequence[tuple[str, str]],
        any_key_types: Sequence[str],
        everything: bool,
    ) -> dict[str, dict[tuple[str, str], str]]:
        """room -> {(type, state_key): event_id} of current state restricted to `pairs`,
        every state key of `any_key_types`, or all of it when `everything`. One query."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT room_id, type, state_key, event_id FROM current_state"
            " WHERE room_id = ANY($1::text[]) AND ($4 OR type = ANY($5::text[])"
            " OR (type, state_key) IN (SELECT * FROM unnest($2::text[], $3::text[])))",
            list(room_ids),
            [t for t, _ in pairs],
            [sk for _, sk in pairs],
            everything,
            list(any_key_types),
        )
        out: dict[str, dict[tuple[str, str], str]] = {r: {} for r in room_ids}
        for row in rows:
            out[row["room_id"]][(row["type"], row["state_key"])] = row["event_id"]
        return out

    async def state_changes(
        self, room_ids: Sequence[str], after: int, upto: int
    ) -> dict[str, set[tuple[str, str]]]:
        """room -> the (type, state_key) of state events in (after, upto]. One query."""
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id, type, state_key FROM events"
            " WHERE room_id = ANY($1::text[]) AND stream_ordering > $2 AND stream_ordering <= $3"
            " AND state_key IS NOT NULL",
            list(room_ids),
            after,
            upto,
        )
        out: dict[str, set[tuple[str, str]]] = {}
        for row in rows:
            out.setdefault(row["room_id"], set()).add((row["type"], row["state_key"]))
        return out
