"""POST /v3/search; the request is checked in request.py, answered in service.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json, invalid_param
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable
from homeserver.search.request import Cursor, parse_room_events

routes = RouteTable()


@routes.post("/search")
async def search(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request)
    categories = body.get("search_categories")
    if not isinstance(categories, dict):
        raise bad_json("'search_categories' is required and must be an object")
    if categories.get("room_events") is None:
        return json_response({"search_categories": {}})
    criteria = parse_room_events(categories["room_events"])
    token = request.query.get("next_batch")
    cursor = Cursor.decode(token) if token else None
    if cursor is not None and cursor.by_rank != criteria.by_rank:
        raise invalid_param("'next_batch' was given for another order_by")
    result = await get_hs(request).search.room_events(requester, criteria, cursor)
    return json_response({"search_categories": {"room_events": result}})
