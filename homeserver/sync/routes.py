"""GET /sync."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routes import RouteTable
from homeserver.sync import legacy

routes = RouteTable()

_PRESENCE = ("online", "offline", "unavailable")


@routes.get("/sync")
async def get_sync(request: web.Request, requester: Requester) -> web.Response:
    set_presence = request.query.get("set_presence")
    if set_presence is not None and set_presence not in _PRESENCE:
        raise invalid_param("set_presence must be online, offline or unavailable")
    response = await get_hs(request).sync_handler.sync(
        requester,
        request.query.get("since"),
        query_int(request, "timeout", 0, minimum=0) or 0,
        query_bool(request, "full_state"),
        request.query.get("filter"),
        set_presence,
        connected=lambda: request.transport is not None and not request.transport.is_closing(),
    )
    return json_response(response)


# The deprecated event APIs (homeserver/sync/legacy.py): removed from the spec, still
# served by Synapse and used by SyTest.
@routes.get("/events")
async def get_events(request: web.Request, requester: Requester) -> web.Response:
    room_id = request.query.get("room_id")
    # Checked, not used: the answer is everything since `from` (the old API's limit is
    # at most a page size, and the sync it rests on has no gap).
    query_int(request, "limit", 0, minimum=0)
    return json_response(
        await legacy.events(
            get_hs(request),
            requester,
            request.query.get("from"),
            query_int(request, "timeout", 0, minimum=0) or 0,
            room_id,
        )
    )


@routes.get("/initialSync")
async def get_initial_sync(request: web.Request, requester: Requester) -> web.Response:
    limit = query_int(request, "limit", 10, minimum=0, maximum=1000)
    archived = query_bool(request, "archived")
    return json_response(await legacy.initial_sync(get_hs(request), requester, limit, archived))


@routes.get("/rooms/{room_id}/initialSync")
async def get_room_initial_sync(request: web.Request, requester: Requester) -> web.Response:
    limit = query_int(request, "limit", 10, minimum=0, maximum=1000)
    room_id = request.match_info["room_id"]
    return json_response(await legacy.room_initial_sync(get_hs(request), requester, room_id, limit))
