"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs."""

from __future__ import annotations

from aiohttp import web

from federation.request_auth import all_but
from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.request import json_response

routes = FederationRouteTable()


# EDUs are not events: U+0000 in them is refused with the rest of the body.
@routes.put("/_matrix/federation/v1/send/{txn_id}", pdus=all_but("pdus"))
async def send_transaction(request: web.Request, origin: str, content) -> web.Response:
    receiver = get_hs(request).federation.transactions
    return json_response(await receiver.receive(origin, request.match_info["txn_id"], content))
