"""Room events for other servers: event, state, state_ids, event_auth, backfill,
get_missing_events, timestamp_to_event.

Every request is X-Matrix signed, and the requesting server must be in the room (a
joined member in the current state, or at the event asked about) and pass the room's
server ACL. Events it may not see under history visibility are sent redacted
(federation.events.visibility); rejected events are never served.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from federation.events.checks import prev_event_ids
from federation.events.visibility import events_for_server
from federation.route_table import FederationRouteTable
from federation.state import auth_chain_ids
from homeserver.events.room_versions import RoomVersion
from homeserver.http.context import get_hs
from homeserver.http.errors import (
    MatrixError,
    bad_json,
    forbidden,
    invalid_param,
    missing_param,
    not_found,
)
from homeserver.http.request import json_response
from homeserver.rooms.history import event_near_ts, timestamp_query
from storage.events import StoredEvent

routes = FederationRouteTable()

V1 = "/_matrix/federation/v1"
MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 20
_SERVABLE = (None, "soft_failed")  # timeline events, and soft-failed ones when referenced


async def _joined_at(hs, origin: str, event: StoredEvent) -> bool:
    if event.state_group_before is None:
        return False
    users = await hs.membership_store.server_members(event.room_id, origin)
    if not users:
        return False
    groups = await hs.event_store.state_groups(
        [event.state_group_before], types=[("m.room.member", u) for u in users]
    )
    ids = groups.get(event.state_group_before, {}).values()
    members = await hs.event_store.get_events(ids)
    return any(m.content.get("membership") == "join" for m in members.values())


async def _authorise(
    hs, origin: str, room_id: str, event: StoredEvent | None = None
) -> RoomVersion:
    """The room's version, if `origin` may read it; else 403 M_FORBIDDEN."""
    try:
        version = await hs.events.room_version(room_id)
    except MatrixError:
        raise forbidden("This server is not in the room") from None
    if not await hs.federation.acl_allows(room_id, origin):
        raise forbidden("This server is denied by the room's server ACL")
    if origin in await hs.events.servers_in_room(room_id):
        return version
    if event is not None and event.room_id == room_id and await _joined_at(hs, origin, event):
        return version
    raise forbidden("This server is not in the room")


async def _room_event(hs, origin: str, room_id: str, event_id: str | None) -> tuple:
    """(room version, the event) for a request naming an event of a room."""
    if not event_id:
        raise missing_param("Missing event_id")
    event = await hs.event_store.get_event(event_id)
    in_room = event is not None and event.room_id == room_id
    version = await _authorise(hs, origin, room_id, event if in_room else None)
    if not in_room or event.status == "rejected":
        raise not_found("Event not found")
    return version, event


def _transaction(hs, pdus: list[dict[str, Any]]) -> web.Response:
    return json_response(
        {"origin": hs.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus}
    )


async def _pdus(hs, ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(ids)
    events = await hs.event_store.get_events(ids)
    return [events[i].event for i in ids if i in events]


@routes.get(V1 + "/event/{event_id}")
async def get_event(request: web.Request, origin: str, _content) -> web.Response:
    hs = get_hs(request)
    event = await hs.event_store.get_event(request.match_info["event_id"])
    if event is None or event.status == "rejected":
        raise not_found("Event not found")
    try:
        version = await _authorise(hs, origin, event.room_id, event)
    except MatrixError:
        # Not telling a server outside the room that the event exists.
        raise not_found("Event not found") from None
    return _transaction(hs, await events_for_server(hs, origin, version, [event]))


async def _state_at(hs, request: web.Request, origin: str) -> tuple[list[str], list[str]]:
    """(state event ids before the event, their auth chain ids)."""
    room_id = request.match_info["room_id"]
    _version, event = await _room_event(hs, origin, room_id, request.query.get("event_id"))
    group = event.state_group_before
    if group is None and _is_room_creation(event.event):
        return [], []  # nothing comes before a room's creation
    if group is None:
        raise not_found("The state at this event is not known here")
    state = (await hs.event_store.state_groups([group])).get(group, {})
    state_ids = sorted(set(state.values()))
    return state_ids, sorted(await auth_chain_ids(hs, state_ids))


def _is_room_creation(event: dict[str, Any]) -> bool:
    return (
        event.get("type") == "m.room.create"
        and event.get("state_key") == ""
        and not prev_event_ids(event)
    )


@routes.get(V1 + "/state_ids/{room_id}")
async def get_state_ids(request: web.Request, origin: str, _content) -> web.Response:
    state_ids, chain_ids = await _state_at(get_hs(request), request, origin)
    return json_response({"pdu_ids": state_ids, "auth_chain_ids": chain_ids})


@routes.get(V1 + "/state/{room_id}")
async def get_state(request: web.Request, origin: str, _content) -> web.Response:
    hs = get_hs(request)
    state_ids, chain_ids = await _state_at(hs, request, origin)
    return json_response(
        {"pdus": await _pdus(hs, state_ids), "auth_chain": await _pdus(hs, chain_ids)}
    )


@routes.get(V1 + "/event_auth/{room_id}/{event_id}")
async def get_event_auth(request: web.Request, origin: str, _content) -> web.Response:
    hs = get_hs(request)
    room_id, event_id = request.match_info["room_id"], request.match_info["event_id"]
    await _room_event(hs, origin, room_id, event_id)
    chain = sorted(await auth_chain_ids(hs, [event_id]))
    return json_response({"auth_chain": await _pdus(hs, chain)})


async def _walk_back(
    hs,
    room_id: str,
    starts: list[str],
    limit: int,
    *,
    include_starts: bool,
    stop: Iterable[str] = (),
    min_depth: int = 0,
) -> list[StoredEvent]:
    """Events reached from `starts` through prev_events, deepest first, up to `limit`.
    Events in `stop` are neither returned nor walked through. One query per event taken
    (the LRU cache answers most), so `limit` bounds the work."""
    seen = set(starts) | set(stop)
    heap: list[tuple[int, str]] = []
    found: dict[str, StoredEvent] = {}

    async def push(ids: list[str]) -> None:
        for event_id, ev in (await hs.event_store.get_events(ids)).items():
            if ev.room_id == room_id and ev.status in _SERVABLE and ev.event["depth"] >= min_depth:
                found[event_id] = ev
                heapq.heappush(heap, (-ev.event["depth"], event_id))

    start_events = await hs.event_store.get_events(starts)
    if include_starts:
        await push([s for s in starts if s in start_events])
    else:
        prevs = [
            p
            for s in starts
            if s in start_events and start_events[s].room_id == room_id
            for p in prev_event_ids(start_events[s].event)
            if p not in seen
        ]
        seen.update(prevs)
        await push(prevs)
    result: list[StoredEvent] = []
    while heap and len(result) < limit:
        _, event_id = heapq.heappop(heap)
        event = found[event_id]
        result.append(event)
        new = [p for p in prev_event_ids(event.event) if p not in seen]
        seen.update(new)
        if new:
            await push(new)
    return result


def _int_param(value: Any, name: str, default: int | None) -> int:
    if value is None:
        if default is None:
            raise missing_param(f"Missing {name}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_param(f"{name} must be an integer") from None


@routes.get(V1 + "/backfill/{room_id}")
async def backfill(request: web.Request, origin: str, _content) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    starts = request.query.getall("v", [])
    if not starts:
        raise missing_param("Missing v")
    limit = _int_param(request.query.get("limit"), "limit", None)
    limit = max(0, min(limit, MAX_BACKFILL))
    version = await _authorise(hs, origin, room_id)
    events = await _walk_back(hs, room_id, starts[:MAX_BACKFILL], limit, include_starts=True)
    return _transaction(hs, await events_for_server(hs, origin, version, events))


def _id_list(content: dict, key: str) -> list[str]:
    # Absent means none (Synapse's reading: the spec marks both required, but an empty
    # body is a valid request that finds nothing).
    value = content.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{key} must be a list of event IDs")
    return value


def _json_int(content: dict, key: str, default: int) -> int:
    value = content.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_json(f"{key} must be an integer")
    return value


@routes.post(V1 + "/get_missing_events/{room_id}")
async def get_missing_events(request: web.Request, origin: str, content) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    if not isinstance(content, dict):
        raise bad_json("Body must be a JSON object")
    earliest = _id_list(content, "earliest_events")
    latest = _id_list(content, "latest_events")
    limit = _json_int(content, "limit", 10)
    min_depth = _json_int(content, "min_depth", 0)
    limit = max(0, min(limit, MAX_MISSING_EVENTS))
    version = await _authorise(hs, origin, room_id)
    events = await _walk_back(
        hs,
        room_id,
        latest[:MAX_MISSING_EVENTS],
        limit,
        include_starts=False,
        stop=earliest,
        min_depth=min_depth,
    )
    events.reverse()  # oldest first
    return json_response({"events": await events_for_server(hs, origin, version, events)})


@routes.get(f"{V1}/timestamp_to_event/{{room_id}}")
async def timestamp_to_event(request: web.Request, origin: str, _content) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    ts, forwards = timestamp_query(request)
    await _authorise(hs, origin, room_id)
    return json_response(await event_near_ts(hs, room_id, ts, forwards))
