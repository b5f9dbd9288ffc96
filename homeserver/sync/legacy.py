"""The deprecated (pre-r0) event APIs, as thin adapters over /sync and /messages.

`GET /events`, `GET /initialSync` and `GET /rooms/{roomId}/initialSync` were removed from
the spec in v1.x but Synapse still serves them and SyTest's fixtures lean on them. Nothing
here keeps state of its own: `/events` is an incremental /sync flattened into one list,
`/initialSync` an initial /sync reshaped into the old per-room layout, and the room form
falls back to the room's visible state and history (/messages) for a reader who is not a
member (world-readable rooms).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from homeserver.http.auth import Requester
from homeserver.http.errors import MatrixError
from homeserver.presence.service import presence_content
from homeserver.rooms.filtering import room_event_filter
from homeserver.rooms.history import paginate, state_for_reader
from homeserver.rooms.serialize import client_event
from homeserver.tokens import (
    decode_pagination_token,
    decode_sync_token,
    encode_sync_token,
)

if TYPE_CHECKING:
    from homeserver.app import Homeserver

# One /events answer carries at most this many timeline events per room: a gap larger
# than that is cut (the old API had no `limited` flag either).
EVENTS_TIMELINE_LIMIT = 100


def _with_room(events: list[dict[str, Any]], room_id: str) -> list[dict[str, Any]]:
    """Events as the old API served them: with their room, and the sender repeated as
    `user_id` where they have one."""
    return [
        {**e, "room_id": room_id, **({"user_id": e["sender"]} if "sender" in e else {})}
        for e in events
    ]


def _legacy_presence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The old presence format names the user in the content too."""
    return [{**e, "content": {**e.get("content", {}), "user_id": e["sender"]}} for e in events]


async def _sync(
    hs: Homeserver,
    requester: Requester,
    since: str | None,
    timeout_ms: int,
    filter_spec: dict[str, Any],
) -> dict[str, Any]:
    return await hs.sync_handler.sync(
        requester,
        since,
        timeout_ms,
        False,
        orjson.dumps(filter_spec).decode(),
        None,
    )


async def events(
    hs: Homeserver,
    requester: Requester,
    from_token: str | None,
    timeout_ms: int,
    room_id: str | None,
) -> dict[str, Any]:
    """GET /events: what happened since `from` (now if absent), waiting up to the timeout.
    With `room_id` of a room the user is not in: peeking, forwards through its history."""
    if room_id is not None and await hs.events.membership(room_id, requester.user_id) != "join":
        return await _peek_events(hs, requester, room_id, from_token, timeout_ms)
    if requester.is_guest and room_id is None:
        # Guests follow rooms, not the whole stream (as Synapse answers them).
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests must name a room_id")
    since = from_token or encode_sync_token(hs.notifier.current_token())
    room_filter: dict[str, Any] = {
        "timeline": {"limit": EVENTS_TIMELINE_LIMIT},
        "include_leave": True,
    }
    if room_id is not None:
        room_filter["rooms"] = [room_id]
    response = await _sync(hs, requester, since, timeout_ms, {"room": room_filter})
    chunk: list[dict[str, Any]] = []
    rooms = response.get("rooms", {})
    for rid, entry in rooms.get("join", {}).items():
        chunk += _with_room(entry.get("timeline", {}).get("events", []), rid)
        chunk += _with_room(entry.get("ephemeral", {}).get("events", []), rid)
        chunk += _with_room(entry.get("account_data", {}).get("events", []), rid)
    for rid, entry in rooms.get("leave", {}).items():
        chunk += _with_room(entry.get("timeline", {}).get("events", []), rid)
    for rid, entry in rooms.get("invite", {}).items():
        chunk += _with_room(
            [
                e
                for e in entry.get("invite_state", {}).get("events", [])
                if e.get("type") == "m.room.member" and e.get("state_key") == requester.user_id
            ],
            rid,
        )
    if room_id is None:
        chunk += _legacy_presence(response.get("presence", {}).get("events", []))
        chunk += response.get("account_data", {}).get("events", [])
    return {"start": since, "end": response["next_batch"], "chunk": chunk}


async def _peek_events(
    hs: Homeserver,
    requester: Requester,
    room_id: str,
    from_token: str | None,
    timeout_ms: int,
) -> dict[str, Any]:
    """A readable room's events after `from` (a sync token, or a pagination token), as
    /messages forwards shows them (it refuses a room the user may not read), waiting for
    one. In a world-readable room the peeker also hears what a member's /events would
    tell of that room: its typing and receipts and its joined members' presence (as
    Synapse peeks). The answer's `end` is a sync token."""
    now = hs.notifier.current_token()
    if from_token is None:
        since = now
    elif from_token.startswith("t"):
        since = {**now, "events": decode_pagination_token(from_token)}
    else:
        since = decode_sync_token(from_token)
    deadline = time.monotonic() + min(timeout_ms, hs.config.max_sync_timeout_ms) / 1000
    while True:
        before = hs.notifier.current_token()
        page = await paginate(
            hs,
            requester,
            room_id,
            "f",
            since["events"],
            None,
            EVENTS_TIMELINE_LIMIT,
            room_event_filter(None),
        )
        chunk = page["chunk"]
        events_end = max(since["events"], before["events"])
        if chunk and "end" in page:
            events_end = max(since["events"], decode_pagination_token(page["end"]))
        members: set[str] = set()
        if await _world_readable(hs, room_id):
            chunk = chunk + await _peek_ephemeral(hs, requester, room_id, since, before)
            members = await hs.membership_store.members_of([room_id], ("join",))
        end = {**before, "events": events_end}
        remaining = deadline - time.monotonic()
        if chunk or remaining <= 0 or hs.notifier.stopped:
            break
        # The room's own streams, and its members' keys for their presence.
        await hs.notifier.wait({room_id, *members}, before, min(remaining, 5.0), _PEEK_STREAMS)
    return {
        "start": from_token or encode_sync_token(since),
        "end": encode_sync_token(end),
        "chunk": chunk,
    }


_PEEK_STREAMS = frozenset({"events", "typing", "receipts", "presence"})


async def _world_readable(hs: Homeserver, room_id: str) -> bool:
    hv = await hs.events.current_state_event(room_id, "m.room.history_visibility")
    return hv is not None and hv.content.get("history_visibility") == "world_readable"


async def _peek_ephemeral(
    hs: Homeserver,
    requester: Requester,
    room_id: str,
    since: dict[str, int],
    until: dict[str, int],
) -> list[dict[str, Any]]:
    """Typing, receipts (not private ones) and members' presence in (since, until]."""
    out: list[dict[str, Any]] = []
    if since["presence"] < until["presence"] and hs.presence.mode != "off":
        now_ms = int(time.time() * 1000)
        rows = await hs.presence.store.changes_of_room_members(
            room_id, since["presence"], until["presence"]
        )
        out += _legacy_presence(
            [
                {"type": "m.presence", "sender": r.user_id, "content": presence_content(r, now_ms)}
                for r in rows
            ]
        )
    if since["receipts"] < until["receipts"]:
        content: dict[str, dict] = {}
        for r in await hs.ephemeral_store.receipt_changes(
            [room_id], since["receipts"], until["receipts"], requester.user_id, []
        ):
            receipt: dict[str, Any] = {"ts": r["ts"]}
            if r["thread_id"]:
                receipt["thread_id"] = r["thread_id"]
            content.setdefault(r["event_id"], {}).setdefault(r["receipt_type"], {})[
                r["user_id"]
            ] = receipt
        if content:
            out.append({"type": "m.receipt", "room_id": room_id, "content": content})
    if since["typing"] < until["typing"]:
        typing = await hs.ephemeral_store.typing_changes(
            [room_id], since["typing"], until["typing"], int(time.time() * 1000), []
        )
        if room_id in typing:
            out.append(
                {"type": "m.typing", "room_id": room_id, "content": {"user_ids": typing[room_id]}}
            )
    return out


def _current_state(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The state at the end of a sync room entry: its state, then its timeline's state."""
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for e in entry.get("state", {}).get("events", []) + entry.get("timeline", {}).get("events", []):
        if "state_key" in e:
            state[(e["type"], e["state_key"])] = e
    return list(state.values())


def _room_entry(room_id: str, entry: dict[str, Any], user_id: str, end: str) -> dict[str, Any]:
    state = _current_state(entry)
    membership = next(
        (
            e["content"].get("membership", "leave")
            for e in state
            if e["type"] == "m.room.member" and e["state_key"] == user_id
        ),
        "leave",
    )
    timeline = entry.get("timeline", {})
    return {
        "room_id": room_id,
        "membership": membership,
        "messages": {
            "chunk": _with_room(timeline.get("events", []), room_id),
            "start": timeline.get("prev_batch", end),
            "end": end,
        },
        "state": _with_room(state, room_id),
        "account_data": entry.get("account_data", {}).get("events", []),
    }


def _receipts(room_id: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    return _with_room(
        [e for e in entry.get("ephemeral", {}).get("events", []) if e["type"] == "m.receipt"],
        room_id,
    )


async def initial_sync(
    hs: Homeserver, requester: Requester, limit: int, archived: bool
) -> dict[str, Any]:
    """GET /initialSync: every room of the user (left ones with `archived`), its current
    state and last `limit` events, with presence, receipts and account data."""
    filter_spec = {"room": {"timeline": {"limit": limit}, "include_leave": archived}}
    response = await _sync(hs, requester, None, 0, filter_spec)
    end = response["next_batch"]
    rooms_out: list[dict[str, Any]] = []
    receipts: list[dict[str, Any]] = []
    rooms = response.get("rooms", {})
    for section in ("join", "leave"):
        for room_id, entry in rooms.get(section, {}).items():
            item = _room_entry(room_id, entry, requester.user_id, end)
            item["visibility"] = await _directory_visibility(hs, room_id)
            rooms_out.append(item)
            receipts += _receipts(room_id, entry)
    for room_id, entry in rooms.get("invite", {}).items():
        invite_state = entry.get("invite_state", {}).get("events", [])
        mine = next(
            (
                e
                for e in invite_state
                if e.get("type") == "m.room.member" and e.get("state_key") == requester.user_id
            ),
            None,
        )
        invited: dict[str, Any] = {
            "room_id": room_id,
            "membership": "invite",
            "invite_state": {"events": invite_state},
        }
        if mine is not None:
            invited["inviter"] = mine.get("sender")
        rooms_out.append(invited)
    return {
        "end": end,
        "rooms": rooms_out,
        "presence": _legacy_presence(response.get("presence", {}).get("events", [])),
        "receipts": receipts,
        "account_data": response.get("account_data", {}).get("events", []),
    }


async def _directory_visibility(hs: Homeserver, room_id: str) -> str:
    """The old `visibility`: whether the room is published in the room directory."""
    room = await hs.directory.room(room_id)
    return "public" if room is not None and room["is_public"] else "private"


async def _members_presence(hs: Homeserver, state: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    out = []
    for e in state:
        if e["type"] == "m.room.member" and e["content"].get("membership") == "join":
            row = await hs.presence.store.get(e["state_key"])
            out.append(
                {
                    "type": "m.presence",
                    "content": {**presence_content(row, now), "user_id": e["state_key"]},
                }
            )
    return out


async def room_initial_sync(
    hs: Homeserver, requester: Requester, room_id: str, limit: int
) -> dict[str, Any]:
    """GET /rooms/{roomId}/initialSync: for members and former members the room's entry of
    an initial sync; for anyone else who may read the room, its visible state and history."""
    filter_spec = {
        "room": {"rooms": [room_id], "timeline": {"limit": limit}, "include_leave": True}
    }
    response = await _sync(hs, requester, None, 0, filter_spec)
    end = response["next_batch"]
    rooms = response.get("rooms", {})
    entry = rooms.get("join", {}).get(room_id) or rooms.get("leave", {}).get(room_id)
    if entry is not None:
        out = _room_entry(room_id, entry, requester.user_id, end)
        out["receipts"] = _receipts(room_id, entry)
    else:
        # Not a member: what /rooms/{id}/state and /messages would show (they refuse a
        # reader who may not see the room).
        readable = await state_for_reader(hs, requester.user_id, room_id)
        state = _with_room([client_event(e) for e in readable.values()], room_id)
        # `end` a sync token (it pages /messages too), so that /events peeking from it
        # misses no typing, receipt or presence of the room (taken before the page: an
        # event at the edge comes twice rather than never).
        now = hs.notifier.current_token()
        page = await paginate(
            hs, requester, room_id, "b", None, None, limit, room_event_filter(None)
        )
        out = {
            "room_id": room_id,
            "membership": "leave",
            "messages": {
                "chunk": _with_room(list(reversed(page["chunk"])), room_id),
                "start": page.get("end", page["start"]),
                "end": encode_sync_token(now),
            },
            "state": state,
            "account_data": [],
            "receipts": [],
        }
    # Members' presence only for members: a former member learns nothing new.
    out["presence"] = (
        await _members_presence(hs, out["state"]) if out["membership"] == "join" else []
    )
    out["visibility"] = await _directory_visibility(hs, room_id)
    return out
