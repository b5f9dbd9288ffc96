"""POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}."""

from __future__ import annotations

import orjson
from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import forbidden
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable
from homeserver.rooms.filtering import check_filter, load_filter

routes = RouteTable()


def _own_user(request: web.Request, requester: Requester) -> str:
    user_id = request.match_info["user_id"]
    if user_id != requester.user_id:
        raise forbidden("Cannot access another user's filters")
    return user_id


@routes.post("/user/{user_id}/filter")
async def create_filter(request: web.Request, requester: Requester) -> web.Response:
    user_id = _own_user(request, requester)
    body = await json_body(request)
    check_filter(body)
    filter_id = await get_hs(request).accounts.filters.add(user_id, orjson.dumps(body).decode())
    return json_response({"filter_id": str(filter_id)})


@routes.get("/user/{user_id}/filter/{filter_id}")
async def get_filter(request: web.Request, requester: Requester) -> web.Response:
    user_id = _own_user(request, requester)
    filters = get_hs(request).accounts.filters
    found = await load_filter(filters, user_id, request.match_info["filter_id"], inline=False)
    return json_response(found)
