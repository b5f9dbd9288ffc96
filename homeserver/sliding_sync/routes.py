"""POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (MSC4186)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.request import json_body, json_response, query_int
from homeserver.http.routes import RouteTable
from homeserver.sliding_sync.request import parse_request

routes = RouteTable()

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


@routes.post(PATH, raw_path=True)
async def sliding_sync(request: web.Request, requester: Requester) -> web.Response:
    # Everything is validated before the first read or write.
    body = parse_request(await json_body(request, allow_empty=True))
    timeout = query_int(request, "timeout", 0, minimum=0, maximum=3_600_000)
    pos = request.query.get("pos") or None
    response = await get_hs(request).sliding_sync.sync(requester, pos, timeout, body)
    return json_response(response)
