"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs."""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.request import json_response

routes = FederationRouteTable()


@routes.put("/_matrix/federation/v1/send/{txn_id}")
async def send_transaction(request: web.Request, origin: str, content) -> web.Response:
    receiver = get_hs(request).federation.transactions
    return json_response(await receiver.receive(origin, request.match_info["txn_id"], content))
