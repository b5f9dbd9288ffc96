"""Reading a room's history: /messages, /context and single events, as visibility allows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.auth import Requester
from homeserver.http.errors import forbidden, not_found
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
    membership, member_ev = await _reader_membership(hs, requester.user_id, room_id)
    if membership is None:
        hv = await hs.events.current_state_event(room_id, "m.room.history_visibility")
        if hv is None or hv.content.get("history_visibility") != "world_readable":
            raise forbidden("You are not in this room")
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
        chunk.extend(await _visible(hs, requester.user_id, batch, membership, member_ev))
        if len(batch) < want and not event_filter.spec and not backfilled:
            exhausted = True
            break
    result: dict[str, Any] = {
        "start": encode_pagination_token(from_pos),
        "chunk": [client_event(e, requester.device_id) for e in chunk],
    }
    if not exhausted and limit > 0:
        result["end"] = encode_pagination_token(cursor)
    if event_filter.lazy_load_members:
        result["state"] = await _lazy_members(hs, room_id, chunk)
    return result


async def context_around(
    hs: Homeserver,
    requester: Requester,
    room_id: str,
    event_id: str,
    limit: int,
    event_filter: EventFilter,
) -> dict[str, Any]:
    ev = await visible_event(hs, requester.user_id, room_id, event_id)
    membership, member_ev = await _reader_membership(hs, requester.user_id, room_id)
    before_n = limit // 2
    after_n = limit - before_n
    before = await hs.event_store.room_events(
        room_id, upto=ev.stream_ordering - 1, limit=before_n, backwards=True
    )
    after = await hs.event_store.room_events(
        room_id,
        after=ev.stream_ordering,
        upto=hs.notifier.positions["events"],
        limit=after_n,
        backwards=False,
    )
    before = await _visible(
        hs, requester.user_id, event_filter.apply(before), membership, member_ev
    )
    after = await _visible(hs, requester.user_id, event_filter.apply(after), membership, member_ev)
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
    return {
        "event": client_event(ev, requester.device_id),
        "events_before": [client_event(e, requester.device_id) for e in before],
        "events_after": [client_event(e, requester.device_id) for e in after],
        "start": encode_pagination_token(start),
        "end": encode_pagination_token(end),
        "state": [client_event(e) for e in state_events.values()],
    }
