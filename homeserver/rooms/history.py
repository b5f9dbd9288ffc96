"""Reading a room's history: /messages, /context and single events, as visibility allows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from homeserver.accounts.ignored import drop_ignored, hidden, ignored_users
from homeserver.http.auth import Requester
from homeserver.http.errors import forbidden, missing_param, not_found
from homeserver.http.request import query_enum, required_query_int
from homeserver.rooms import membership
from homeserver.rooms.filtering import EventFilter
from homeserver.rooms.serialize import client_event
from homeserver.rooms.visibility import filter_visible
from homeserver.tokens import encode_pagination_token
from storage.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.app import Homeserver

# How many rows one /messages request may scan to fill a filtered page.
_MAX_SCAN_ROUNDS = 5


async def _reader_membership(
    hs: Homeserver, user_id: str, room_id: str
) -> tuple[str | None, StoredEvent | None]:
    if not await hs.event_store.room_exists(room_id):
        raise forbidden("You are not in this room")
    ev = await hs.events.current_state_event(room_id, "m.room.member", user_id)
    return (ev.content.get("membership") if ev else None), ev


async def _visible(
    hs: Homeserver,
    user_id: str,
    events: list[StoredEvent],
    membership: str | None,
    member_ev: StoredEvent | None,
) -> list[StoredEvent]:
    joined_at = (
        member_ev.stream_ordering if member_ev is not None and membership == "join" else None
    )
    return await filter_visible(hs.event_store, user_id, events, membership, joined_at)


async def readable_membership(
    hs: Homeserver, user_id: str, room_id: str
) -> tuple[str | None, StoredEvent | None]:
    """The reader's membership (and its event) in a room they may read: refuses
    (M_FORBIDDEN) one who is not in the room and cannot peek into it."""
    membership, member_ev = await _reader_membership(hs, user_id, room_id)
    if membership is None:
        hv = await hs.events.current_state_event(room_id, "m.room.history_visibility")
        if hv is None or hv.content.get("history_visibility") != "world_readable":
            raise forbidden("You are not in this room")
    return membership, member_ev


async def visible_events(
    hs: Homeserver, user_id: str, room_id: str, events: list[StoredEvent]
) -> list[StoredEvent]:
    """Those of the room's `events` that `user_id` may see."""
    membership, member_ev = await _reader_membership(hs, user_id, room_id)
    return await _visible(hs, user_id, events, membership, member_ev)


async def visible_event(hs: Homeserver, user_id: str, room_id: str, event_id: str) -> StoredEvent:
    membership, member_ev = await _reader_membership(hs, user_id, room_id)
    ev = await hs.event_store.get_event(event_id)
    if ev is None or ev.room_id != room_id:
        raise not_found("Event not found")
    if not await _visible(hs, user_id, [ev], membership, member_ev):
        raise not_found("Event not found")
    return ev


async def _lazy_members(
    hs: Homeserver, room_id: str, events: list[StoredEvent]
) -> list[dict[str, Any]]:
    senders = {e.sender for e in events}
    state = await hs.events.current_state(room_id, [("m.room.member", s) for s in senders])
    return [client_event(e) for e in state.values()]


async def paginate(
    hs: Homeserver,
    requester: Requester,
    room_id: str,
    direction: str,
    from_pos: int | None,
    to_pos: int | None,
    limit: int,
    event_filter: EventFilter,
) -> dict[str, Any]:
    membership, member_ev = await readable_membership(hs, requester.user_id, room_id)
    ignored = await ignored_users(hs.accounts.account_data, requester.user_id)
    backwards = direction == "b"
    if from_pos is None:
        from_pos = hs.notifier.positions["events"] if backwards else -(2**62)
    if membership in ("leave", "ban") and member_ev is not None and backwards:
        # Former members see history up to their departure, not after it.
        from_pos = min(from_pos, member_ev.stream_ordering)
    chunk: list[StoredEvent] = []
    cursor = from_pos
    exhausted = False
    # Backfill until a server has nothing older: a server may hold only part of the history
    # (it joined late), so a short backfill does not mean the room's start is reached.
    may_backfill = True
    for _ in range(_MAX_SCAN_ROUNDS):
        want = max(limit - len(chunk), 0)
        if want == 0:
            break
        backfilled = False
        if backwards:
            batch = await hs.event_store.room_events(
                room_id, after=to_pos, upto=cursor, limit=want, backwards=True
            )
            if len(batch) < want and to_pos is None and may_backfill:
                # Past the oldest event we hold: ask a server in the room for more.
                backfilled = bool(
                    await hs.federation.backfiller.backfill(room_id, want - len(batch))
                )
                may_backfill = backfilled
                if backfilled:
                    batch = await hs.event_store.room_events(
                        room_id, after=to_pos, upto=cursor, limit=want, backwards=True
                    )
        else:
            upper = to_pos if to_pos is not None else hs.notifier.positions["events"]
            batch = await hs.event_store.room_events(
                room_id, after=cursor, upto=upper, limit=want, backwards=False
            )
        if not batch:
            exhausted = True
            break
        cursor = batch[-1].stream_ordering - 1 if backwards else batch[-1].stream_ordering
        batch = event_filter.apply(batch)
        shown = await _visible(hs, requester.user_id, batch, membership, member_ev)
        chunk.extend(drop_ignored(shown, ignored))
        if len(batch) < want and not event_filter.spec and not backfilled:
            exhausted = True
            break
    result: dict[str, Any] = {
        "start": encode_pagination_token(from_pos),
        "chunk": await hs.relations.serialize(
            chunk, requester.user_id, requester.device_id, sorted(ignored)
        ),
    }
    # `end` whenever events were read, even at the end of the timeline (as Synapse; SyTest
    # and clients page on until a page comes back empty, then without `end`).
    if limit > 0 and (not exhausted or cursor != from_pos):
        result["end"] = encode_pagination_token(cursor)
    if event_filter.lazy_load_members:
        result["state"] = await _lazy_members(hs, room_id, chunk)
    return result


async def events_around(
    hs: Homeserver, ev: StoredEvent, before_n: int, after_n: int
) -> tuple[list[StoredEvent], list[StoredEvent]]:
    """Up to `before_n` events of the room before `ev` (newest first) and `after_n` after
    it (oldest first), unfiltered: /context and /search's event_context filter them."""
    before = await hs.event_store.room_events(
        ev.room_id, upto=ev.stream_ordering - 1, limit=before_n, backwards=True
    )
    after = await hs.event_store.room_events(
        ev.room_id,
        after=ev.stream_ordering,
        upto=hs.notifier.positions["events"],
        limit=after_n,
        backwards=False,
    )
    return before, after


async def context_around(
    hs: Homeserver,
    requester: Requester,
    room_id: str,
    event_id: str,
    limit: int,
    event_filter: EventFilter,
    *,
    moderator: bool = False,
) -> dict[str, Any]:
    """/context; with `moderator` (the admin API's view, for reports) every event of the
    room is seen, whatever the requester's membership."""
    if moderator:
        found = await hs.event_store.get_event(event_id)
        if found is None or found.room_id != room_id:
            raise not_found("Event not found")
        ev = found
    else:
        membership, _ = await _reader_membership(hs, requester.user_id, room_id)
        if membership is None:
            # Never a member: the room itself is closed to them unless world-readable
            # (403 as Synapse answers, not the 404 of an unseen event).
            hv = await hs.events.current_state_event(room_id, "m.room.history_visibility")
            if hv is None or hv.content.get("history_visibility") != "world_readable":
                raise forbidden("You are not in this room")
        ev = await visible_event(hs, requester.user_id, room_id, event_id)
    # The moderator's view (reports) shows everything; a user does not see whom they ignore.
    ignored = (
        frozenset()
        if moderator
        else await ignored_users(hs.accounts.account_data, requester.user_id)
    )
    if hidden(ev.sender, ev.state_key, ignored):
        raise not_found("Event not found")
    membership, member_ev = await _reader_membership(hs, requester.user_id, room_id)
    before_n = limit // 2
    after_n = limit - before_n
    before, after = await events_around(hs, ev, before_n, after_n)
    before = drop_ignored(event_filter.apply(before), ignored)
    after = drop_ignored(event_filter.apply(after), ignored)
    if not moderator:
        before = await _visible(hs, requester.user_id, before, membership, member_ev)
        after = await _visible(hs, requester.user_id, after, membership, member_ev)
    start = before[-1].stream_ordering - 1 if before else ev.stream_ordering - 1
    end = after[-1].stream_ordering if after else ev.stream_ordering
    last = after[-1] if after else ev
    # State at the last event returned, as the spec asks.
    group = last.state_group_before
    state_ids = (await hs.event_store.state_groups([group])).get(group, {}) if group else {}
    if event_filter.lazy_load_members:
        senders = {e.sender for e in (*before, ev, *after)}
        state_ids = {
            k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders
        }
    state_events = await hs.event_store.get_events(state_ids.values())
    device_id = requester.device_id
    bundles = await hs.relations.bundle(
        (*before, ev, *after), requester.user_id, device_id, ignored=sorted(ignored)
    )
    return {
        "event": client_event(ev, device_id, relations=bundles),
        "events_before": [client_event(e, device_id, relations=bundles) for e in before],
        "events_after": [client_event(e, device_id, relations=bundles) for e in after],
        "start": encode_pagination_token(start),
        "end": encode_pagination_token(end),
        "state": [client_event(e) for e in state_events.values()],
    }


def timestamp_query(request: web.Request) -> tuple[int, bool]:
    """(ts, forwards) of a timestamp_to_event request, client or federation: both
    required, `dir` f or b (else 400 M_MISSING_PARAM / M_INVALID_PARAM)."""
    ts = required_query_int(request, "ts")
    direction = query_enum(request, "dir", ("f", "b"))
    if direction is None:
        raise missing_param("Missing 'dir'")
    return ts, direction == "f"


async def event_near_ts(hs: Homeserver, room_id: str, ts: int, forwards: bool) -> dict[str, Any]:
    """{event_id, origin_server_ts} of the event closest to `ts` in the direction asked,
    or 404 M_NOT_FOUND."""
    found = await hs.event_store.event_near_ts(room_id, ts, forwards)
    if found is None:
        way = "forward" if forwards else "backward"
        raise not_found(f"Unable to find event from {ts} in {way} direction")
    return {"event_id": found[0], "origin_server_ts": found[1]}


async def event_at_time(
    hs: Homeserver, user_id: str, room_id: str, ts: int, forwards: bool
) -> dict[str, Any]:
    """For a member of the room, or anyone if it is world-readable (as Synapse)."""
    membership, _ = await _reader_membership(hs, user_id, room_id)
    if membership != "join":
        hv = await hs.events.current_state_event(room_id, "m.room.history_visibility")
        if hv is None or hv.content.get("history_visibility") != "world_readable":
            raise forbidden("You are not in this room")
    return await event_near_ts(hs, room_id, ts, forwards)


async def state_for_reader(hs: Homeserver, user_id: str, room_id: str) -> dict:
    """Current state for members; the state when they left for former members, but not
    for banned ones (as Synapse: a ban ends the user's view of the room, unless it is
    world-readable)."""
    if not await membership.room_exists(hs, room_id):
        raise forbidden("You are not in this room")
    ev = await hs.events.current_state_event(room_id, "m.room.member", user_id)
    current = ev.content.get("membership") if ev else None
    if current == "join":
        return await hs.events.current_state(room_id)
    if current == "leave" and ev is not None:
        group = ev.state_group_before
        ids = (
            (await hs.event_store.state_groups([group])).get(group, {}) if group is not None else {}
        )
        ids[("m.room.member", user_id)] = ev.event_id
        events = await hs.event_store.get_events(ids.values())
        return {k: events[v] for k, v in ids.items() if v in events}
    hv = await hs.events.current_state_event(room_id, "m.room.history_visibility")
    if hv is not None and hv.content.get("history_visibility") == "world_readable":
        return await hs.events.current_state(room_id)
    raise forbidden("You are not in this room")
