"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy (space_hierarchy.yaml); the walk is
hierarchy.py. GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (room_summary.yaml, and
MSC3266's unstable paths, which Element and nheko call); the logic is room_summary.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester, token_from_request
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routes import RouteTable, authenticated
from homeserver.spaces.hierarchy import DEFAULT_LIMIT, MAX_DEPTH, MAX_LIMIT
from homeserver.spaces.room_summary import room_summary

routes = RouteTable()


@routes.get("/rooms/{room_id}/hierarchy", versions=("v1",))
async def get_hierarchy(request: web.Request, requester: Requester) -> web.Response:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!"):
        raise invalid_param("Not a room ID")
    suggested_only = query_bool(request, "suggested_only")
    limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    max_depth = query_int(request, "max_depth", MAX_DEPTH, minimum=0, maximum=MAX_DEPTH)
    answer = await get_hs(request).spaces.page(
        requester.user_id,
        room_id,
        suggested_only=suggested_only,
        max_depth=max_depth,
        limit=limit,
        from_token=request.query.get("from"),
    )
    return json_response(answer)


# MSC3266 before it was stable: both unstable paths clients still call.
_UNSTABLE = ("unstable/im.nheko.summary",)


async def _room_summary(request: web.Request) -> web.Response:
    hs = get_hs(request)
    # Authentication is optional (spec v1.15): a token, when sent, must be valid.
    user_id = None
    if token_from_request(request) is not None:
        user_id = (await authenticated(request)).user_id
    via = request.query.getall("via", [])
    answer = await room_summary(hs, user_id, request.match_info["room"], via)
    return json_response(answer)


@routes.get("/room_summary/{room}", versions=("v1",), auth=False)
async def get_room_summary(request: web.Request) -> web.Response:
    return await _room_summary(request)


@routes.get("/rooms/{room}/summary", versions=_UNSTABLE, auth=False)
async def get_room_summary_unstable(request: web.Request) -> web.Response:
    return await _room_summary(request)


@routes.get("/summary/{room}", versions=_UNSTABLE, auth=False)
async def get_room_summary_unstable_short(request: web.Request) -> web.Response:
    return await _room_summary(request)
