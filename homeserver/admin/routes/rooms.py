"""Room administration in Synapse's shapes: listing and searching rooms, a room's details,
members, state, messages and forward extremities; blocking; making someone room admin;
joining a user to a room; deleting rooms (v1 at once, v2 in the background with a
status) and purging history."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from homeserver.admin.api import AdminRoutes, direction, local_user, note, order, page
from homeserver.admin.service import new_task_id
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.http.request import field, json_body, json_response, query_int, query_json
from homeserver.http.routes import RouteTable
from homeserver.rooms import membership
from homeserver.rooms.filtering import EventFilter
from homeserver.rooms.history import context_around
from homeserver.rooms.serialize import client_event
from homeserver.tokens import decode_pagination_token, encode_pagination_token
from storage.admin import ROOM_ORDERS

routes = RouteTable()
admin = AdminRoutes(routes)

DELETE_KIND = "room_delete"
PURGE_KIND = "purge_history"


def room_json(row) -> dict[str, Any]:
    return {
        "room_id": row["room_id"],
        "name": row["name"],
        "canonical_alias": row["canonical_alias"],
        "joined_members": row["joined_members"],
        "joined_local_members": row["joined_local_members"],
        "version": row["room_version"],
        "creator": row["creator"],
        "encryption": row["encryption"],
        "federatable": row["federatable"],
        "public": row["is_public"],
        "join_rules": row["join_rules"],
        "guest_access": row["guest_access"],
        "history_visibility": row["history_visibility"],
        "state_events": row["state_events"],
        "room_type": row["room_type"],
    }


async def _room_id(request: web.Request) -> str:
    """The path's room ID, or the room a local alias in its place names."""
    room_id = request.match_info["room_id"]
    if room_id.startswith("#"):
        row = await get_hs(request).directory.alias(room_id)
        if row is None:
            raise not_found("Room alias not found")
        return row["room_id"]
    if not room_id.startswith("!"):
        raise invalid_param(f"Not a room ID or alias: {room_id}")
    return room_id


async def _existing_room(request: web.Request):
    row = await get_hs(request).admin.store.room(await _room_id(request))
    if row is None:
        raise not_found("Room not found")
    return row


@admin.get("/v1/rooms")
async def list_rooms(request: web.Request, _requester: Requester) -> web.Response:
    start, limit = page(request)
    order_by = order(request, ROOM_ORDERS, "name")
    public = _tri_state(request, "public_rooms")
    empty = _tri_state(request, "empty_rooms")
    rows, total = await get_hs(request).admin.store.list_rooms(
        request.query.get("search_term") or None,
        public,
        empty,
        order_by,
        direction(request),
        start,
        limit,
    )
    body: dict[str, Any] = {
        "rooms": [room_json(r) for r in rows],
        "offset": start,
        "total_rooms": total,
    }
    if start + len(rows) < total:
        body["next_batch"] = start + len(rows)
    if start > 0:
        body["prev_batch"] = max(0, start - limit)
    return json_response(body)


def _tri_state(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise invalid_param(f"'{name}' must be true or false")
    return value == "true"


@admin.get("/v1/rooms/{room_id}")
async def get_room(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing_room(request)
    body = room_json(row)
    local = await get_hs(request).admin.store.joined_local_devices(row["room_id"])
    body.update(
        avatar=row["avatar_url"], topic=row["topic"], joined_local_devices=local, forgotten=False
    )
    return json_response(body)


@admin.get("/v1/rooms/{room_id}/members")
async def room_members(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing_room(request)
    members = await get_hs(request).admin.store.joined_members(row["room_id"])
    return json_response({"members": members, "total": len(members)})


@admin.get("/v1/rooms/{room_id}/state")
async def room_state(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing_room(request)
    state = await get_hs(request).events.current_state(row["room_id"])
    wanted = request.query.get("type")
    events = [e for e in state.values() if wanted is None or e.type == wanted]
    return json_response({"state": [client_event(e) for e in events]})


@admin.get("/v1/rooms/{room_id}/messages", audit=True)
async def room_messages(request: web.Request, _requester: Requester) -> web.Response:
    """The room's timeline as /messages gives it, without a membership of the admin's
    (no visibility filter: this is the moderator's view)."""
    hs = get_hs(request)
    row = await _existing_room(request)
    backwards = direction(request)
    limit = query_int(request, "limit", 10, maximum=1000)
    raw_from = request.query.get("from")
    raw_to = request.query.get("to")
    from_pos = decode_pagination_token(raw_from) if raw_from else None
    to_pos = decode_pagination_token(raw_to) if raw_to else None
    event_filter = EventFilter(query_json(request, "filter"))
    if from_pos is None:
        from_pos = hs.notifier.positions["events"] if backwards else -(2**62)
    if backwards:
        events = await hs.event_store.room_events(
            row["room_id"], after=to_pos, upto=from_pos, limit=limit, backwards=True
        )
    else:
        events = await hs.event_store.room_events(
            row["room_id"], after=from_pos, upto=to_pos, limit=limit, backwards=False
        )
    body: dict[str, Any] = {
        "start": encode_pagination_token(from_pos),
        "chunk": [client_event(e) for e in event_filter.apply(events)],
    }
    if len(events) == limit and events:
        last = events[-1].stream_ordering
        body["end"] = encode_pagination_token(last - 1 if backwards else last)
    return json_response(body)


@admin.get("/v1/rooms/{room_id}/context/{event_id}", audit=True)
async def event_context(request: web.Request, requester: Requester) -> web.Response:
    """/context as the moderator sees it (for reports): no membership needed."""
    row = await _existing_room(request)
    limit = query_int(request, "limit", 10, maximum=100)
    event_filter = EventFilter(query_json(request, "filter"))
    body = await context_around(
        get_hs(request),
        requester,
        row["room_id"],
        request.match_info["event_id"],
        limit,
        event_filter,
        moderator=True,
    )
    return json_response(body)


@admin.get("/v1/rooms/{room_id}/forward_extremities")
async def forward_extremities(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing_room(request)
    rows = await get_hs(request).admin.store.forward_extremities(row["room_id"])
    results = [{k: r[k] for k in ("event_id", "state_group", "depth", "received_ts")} for r in rows]
    return json_response({"count": len(results), "results": results})


@admin.delete("/v1/rooms/{room_id}/forward_extremities")
async def clear_forward_extremities(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing_room(request)
    deleted = await get_hs(request).admin.clear_extremities(row["room_id"])
    note(request, deleted=deleted)
    return json_response({"deleted": deleted})


@admin.get("/v1/rooms/{room_id}/block")
async def get_block(request: web.Request, _requester: Requester) -> web.Response:
    by = await get_hs(request).admin.store.blocked_by(await _room_id(request))
    return json_response({"block": True, "user_id": by} if by else {"block": False})


@admin.put("/v1/rooms/{room_id}/block")
async def set_block(request: web.Request, requester: Requester) -> web.Response:
    """Blocking needs no local copy of the room: a room can be blocked before anyone
    here joins it."""
    room_id = await _room_id(request)
    body = await json_body(request)
    block = field(body, "block", bool)
    store = get_hs(request).admin.store
    if block:
        await store.block(room_id, requester.user_id)
    else:
        await store.unblock(room_id)
    note(request, block=block)
    return json_response({"block": block})


@admin.post("/v1/rooms/{room_id}/make_room_admin")
async def make_room_admin(request: web.Request, requester: Requester) -> web.Response:
    room_id = await _room_id(request)
    body = await json_body(request, allow_empty=True)
    user_id = local_user(request, field(body, "user_id", str, requester.user_id))
    if not await get_hs(request).accounts.users.is_active(user_id):
        raise not_found("User not found")
    await get_hs(request).admin.make_room_admin(room_id, user_id)
    note(request, user_id=user_id)
    return json_response({})


@admin.post("/v1/join/{room_id_or_alias}")
async def join_user(request: web.Request, requester: Requester) -> web.Response:
    """Joins a local user to a room; where the room is not public, the admin (who must be
    in it) invites them first."""
    hs = get_hs(request)
    body = await json_body(request)
    user_id = local_user(request, field(body, "user_id", str))
    if not await hs.accounts.users.is_active(user_id):
        raise not_found("User not found")
    room_id, _servers = await membership.resolve_room(hs, request.match_info["room_id_or_alias"])
    if not await hs.event_store.room_exists(room_id):
        raise not_found("Room not found")
    join_rules = await hs.events.current_state_event(room_id, "m.room.join_rules")
    public = join_rules is not None and join_rules.content.get("join_rule") == "public"
    current = await hs.events.membership(room_id, user_id)
    if not public and current not in ("join", "invite"):
        if await hs.events.membership(room_id, requester.user_id) != "join":
            raise forbidden("You are not in this room, and it is not public")
        await membership.set_membership(hs, requester.user_id, room_id, user_id, "invite")
    await membership.join(hs, user_id, room_id)
    note(request, room_id, user_id=user_id)
    return json_response({"room_id": room_id})


# -- deletion -------------------------------------------------------------------------------


async def _delete_options(request: web.Request) -> dict[str, Any]:
    body = await json_body(request, allow_empty=True)
    new_room_user_id = field(body, "new_room_user_id", str, None)
    if new_room_user_id is not None:
        local_user(request, new_room_user_id)
        if not await get_hs(request).accounts.users.is_active(new_room_user_id):
            raise not_found("new_room_user_id is not a user of this server")
    # Accepted for Synapse's callers; local members always leave before a purge here.
    field(body, "force_purge", bool, False)
    return {
        "block": field(body, "block", bool, False),
        "purge": field(body, "purge", bool, True),
        "new_room_user_id": new_room_user_id,
        "room_name": field(body, "room_name", str, None),
        "message": field(body, "message", str, None),
    }


@admin.delete("/v1/rooms/{room_id}", action="delete_room")
async def delete_room_v1(request: web.Request, _requester: Requester) -> web.Response:
    """The older, synchronous deletion: answers when the room is gone."""
    room_id = await _room_id(request)
    options = await _delete_options(request)
    if not options["block"] and not await get_hs(request).event_store.room_exists(room_id):
        raise not_found("Room not found")
    result = await get_hs(request).admin.shutdown_room(room_id, **options)
    note(request, block=options["block"], purge=options["purge"])
    return json_response(result)


@admin.delete("/v2/rooms/{room_id}", action="delete_room")
async def delete_room_v2(request: web.Request, _requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = await _room_id(request)
    options = await _delete_options(request)
    if not options["block"] and not await hs.event_store.room_exists(room_id):
        raise not_found("Room not found")
    for task in await hs.admin.store.room_tasks(room_id, DELETE_KIND):
        if task["status"] in ("scheduled", "active"):
            raise MatrixError(400, "M_UNKNOWN", "A deletion of this room is already in progress")
    delete_id = new_task_id()
    await hs.admin.store.create_task(delete_id, DELETE_KIND, room_id)
    hs.admin.start_room_deletion(room_id, delete_id, **options)
    note(request, delete_id=delete_id, block=options["block"], purge=options["purge"])
    return json_response({"delete_id": delete_id})


def _delete_status(task) -> dict[str, Any]:
    body: dict[str, Any] = {
        "delete_id": task["task_id"],
        "room_id": task["room_id"],
        "status": task["status"],
        "shutdown_room": orjson.loads(task["result"])
        or {
            "kicked_users": [],
            "failed_to_kick_users": [],
            "local_aliases": [],
            "new_room_id": None,
        },
    }
    if task["error"]:
        body["error"] = task["error"]
    return body


@admin.get("/v2/rooms/{room_id}/delete_status")
async def room_delete_status(request: web.Request, _requester: Requester) -> web.Response:
    tasks = await get_hs(request).admin.store.room_tasks(await _room_id(request), DELETE_KIND)
    if not tasks:
        raise not_found("No delete task for room")
    return json_response({"results": [_delete_status(t) for t in tasks]})


@admin.get("/v2/rooms/delete_status/{delete_id}")
async def delete_status(request: web.Request, _requester: Requester) -> web.Response:
    task = await get_hs(request).admin.store.task(request.match_info["delete_id"], DELETE_KIND)
    if task is None:
        raise not_found("delete id not found")
    body = _delete_status(task)
    del body["delete_id"]
    return json_response(body)


# -- history purge --------------------------------------------------------------------------


async def _purge_history(request: web.Request, event_id: str | None) -> web.Response:
    hs = get_hs(request)
    row = await _existing_room(request)
    room_id = row["room_id"]
    body = await json_body(request, allow_empty=True)
    delete_local = field(body, "delete_local_events", bool, False)
    event_id = event_id or field(body, "purge_up_to_event_id", str, None)
    if event_id is not None:
        before = await hs.admin.store.event_ordering(room_id, event_id)
        if before is None:
            raise not_found("Event not found in this room")
    else:
        ts = field(body, "purge_up_to_ts", int, None)
        if ts is None:
            raise MatrixError(
                400, "M_MISSING_PARAM", "Need either purge_up_to_event_id or purge_up_to_ts"
            )
        found = await hs.admin.store.ordering_before_ts(room_id, ts)
        if found is None:
            raise not_found("No event before that time in this room")
        before = found
    purge_id = new_task_id()
    await hs.admin.store.create_task(purge_id, PURGE_KIND, room_id)
    hs.admin.start_history_purge(room_id, purge_id, before, delete_local)
    note(request, purge_id=purge_id, delete_local_events=delete_local)
    return json_response({"purge_id": purge_id})


@admin.post("/v1/purge_history/{room_id}", action="purge_history")
async def purge_history(request: web.Request, _requester: Requester) -> web.Response:
    return await _purge_history(request, None)


@admin.post("/v1/purge_history/{room_id}/{event_id}", action="purge_history")
async def purge_history_to(request: web.Request, _requester: Requester) -> web.Response:
    return await _purge_history(request, request.match_info["event_id"])


@admin.get("/v1/purge_history_status/{purge_id}")
async def purge_history_status(request: web.Request, _requester: Requester) -> web.Response:
    task = await get_hs(request).admin.store.task(request.match_info["purge_id"], PURGE_KIND)
    if task is None:
        raise not_found("purge id not found")
    body = {"status": task["status"]}
    if task["error"]:
        body["error"] = task["error"]
    return json_response(body)
