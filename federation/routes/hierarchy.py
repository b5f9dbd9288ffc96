"""GET /_matrix/federation/v1/hierarchy/{roomId}: a space and its children, for another
server whose user walks the space (server-server space_hierarchy.yaml). The walk itself
is homeserver/spaces/hierarchy.py; asking other servers is federation/hierarchy.py."""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.request import json_response, query_bool

routes = FederationRouteTable()


@routes.get("/_matrix/federation/v1/hierarchy/{room_id}")
async def get_hierarchy(request: web.Request, origin: str, _content) -> web.Response:
    suggested_only = query_bool(request, "suggested_only")
    answer = await get_hs(request).spaces.for_server(
        origin, request.match_info["room_id"], suggested_only
    )
    return json_response(answer)
