"""GET/POST /_matrix/federation/v1/publicRooms: our published room directory, for
admitted servers (public_rooms.yaml). Paging and filtering are the client API's."""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.directory.public_rooms import public_rooms
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, invalid_param
from homeserver.http.request import field, json_response, query_int

routes = FederationRouteTable()

PATH = "/_matrix/federation/v1/publicRooms"
MAX_LIMIT = 500


@routes.get(PATH)
async def get_public_rooms(request: web.Request, _origin: str, _content) -> web.Response:
    # `limit` 0 (or none) means no limit; we still cap a page.
    limit = query_int(request, "limit", None, maximum=None) or MAX_LIMIT
    directory = get_hs(request).directory
    return json_response(
        await public_rooms(directory, limit=min(limit, MAX_LIMIT), since=request.query.get("since"))
    )


@routes.post(PATH)
async def post_public_rooms(request: web.Request, _origin: str, content) -> web.Response:
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise MatrixError(400, "M_NOT_JSON", "Request body must be a JSON object")
    limit = field(content, "limit", int, None)
    if limit is not None and limit < 0:
        raise invalid_param("'limit' must not be negative")
    since = field(content, "since", str, None)
    flt = field(content, "filter", dict, {})
    term = field(flt, "generic_search_term", str, None)
    room_types = field(flt, "room_types", list, None)
    if room_types is not None and not all(t is None or isinstance(t, str) for t in room_types):
        raise bad_json("'room_types' holds strings or null")
    return json_response(
        await public_rooms(
            get_hs(request).directory,
            limit=min(limit or MAX_LIMIT, MAX_LIMIT),
            since=since,
            term=term,
            room_types=room_types,
        )
    )
