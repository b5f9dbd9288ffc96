"""GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] and
GET /v1/rooms/{roomId}/threads; the logic is homeserver/relations/service.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param
from homeserver.http.request import json_response, query_bool, query_enum, query_int
from homeserver.http.routes import RouteTable
from homeserver.relations.service import RECURSION_DEPTH, Page
from homeserver.tokens import decode_pagination_token

routes = RouteTable()

V1 = ("v1",)
DEFAULT_RELATIONS_LIMIT = 5
MAX_RELATIONS_LIMIT = 1000
DEFAULT_THREADS_LIMIT = 5
MAX_THREADS_LIMIT = 100


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!"):
        raise invalid_param("Not a room ID")
    return room_id


def _token(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return decode_pagination_token(value) if value else None


async def _relations(
    request: web.Request, requester: Requester, rel_type: str | None, event_type: str | None
) -> web.Response:
    room_id = _room_id(request)
    direction = query_enum(request, "dir", ("b", "f")) or "b"
    # The spec leaves the bounds to the server: above the maximum is clamped, 0 reads as
    # 1 (an empty page without next_batch would say "no more"), below 0 is refused.
    limit = max(
        query_int(request, "limit", DEFAULT_RELATIONS_LIMIT, maximum=MAX_RELATIONS_LIMIT), 1
    )
    page = Page(_token(request, "from"), _token(request, "to"), limit, direction == "b")
    recurse = query_bool(request, "recurse")
    result = await get_hs(request).relations.relations(
        requester.user_id,
        requester.device_id,
        room_id,
        request.match_info["event_id"],
        rel_type,
        event_type,
        page,
        recurse,
    )
    if "recurse" in request.query:
        result["recursion_depth"] = RECURSION_DEPTH if recurse else 0
    return json_response(result)


@routes.get("/rooms/{room_id}/relations/{event_id}", versions=V1)
async def get_relations(request: web.Request, requester: Requester) -> web.Response:
    return await _relations(request, requester, None, None)


@routes.get("/rooms/{room_id}/relations/{event_id}/{rel_type}", versions=V1)
async def get_relations_by_type(request: web.Request, requester: Requester) -> web.Response:
    return await _relations(request, requester, request.match_info["rel_type"], None)


@routes.get("/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}", versions=V1)
async def get_relations_by_type_and_event_type(
    request: web.Request, requester: Requester
) -> web.Response:
    match = request.match_info
    return await _relations(request, requester, match["rel_type"], match["event_type"])


@routes.get("/rooms/{room_id}/threads", versions=V1)
async def get_threads(request: web.Request, requester: Requester) -> web.Response:
    room_id = _room_id(request)
    include = query_enum(request, "include", ("all", "participated")) or "all"
    # "Must be an integer greater than zero" (spec); large values are clamped.
    limit = query_int(request, "limit", DEFAULT_THREADS_LIMIT, minimum=1, maximum=MAX_THREADS_LIMIT)
    result = await get_hs(request).relations.threads(
        requester.user_id,
        requester.device_id,
        room_id,
        participated=include == "participated",
        from_pos=_token(request, "from"),
        limit=limit,
    )
    return json_response(result)
