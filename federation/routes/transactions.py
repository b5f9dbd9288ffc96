"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs."""

from __future__ import annotations

from aiohttp import web

from federation.request_auth import signed_request
from homeserver.http.context import get_hs
from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()


@routes.put("/_matrix/federation/v1/send/{txn_id}", auth=False, raw_path=True)
@signed_request
async def send_transaction(request: web.Request, origin: str, content) -> web.Response:
    receiver = get_hs(request).federation.transactions
    return json_response(await receiver.receive(origin, request.match_info["txn_id"], content))
