"""GET /sync."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routes import RouteTable

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
    )
    return json_response(response)
