"""/_matrix/federation/v1/3pid/onbind (server-server third_party_invite.yaml): an
identity server tells us an address is now bound to one of our users, with the pending
third-party invites for it. The logic is in homeserver/rooms/third_party_invites.py.

The caller is an identity server, not a Matrix server: there is no X-Matrix signature.
What is trusted is each invite's signed block, checked against the keys of the room's
m.room.third_party_invite event, with the key's validity confirmed by an identity server
the operator lists, before any invite is made.

Mounted on the federation listener and on the client listener: identity servers reach a
homeserver at its client address too (SyTest's does). The spec says PUT; identity
servers (Sydent, SyTest's) send POST, so both are served.
"""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.request import json_body, json_response
from homeserver.rooms import third_party_invites

routes = FederationRouteTable()


# Public (third_party_invite.yaml's onbind has no security): the caller is an identity
# server; the signed blocks are the credential, checked per invite.
@routes.put("/_matrix/federation/v1/3pid/onbind", public=True)
@routes.post("/_matrix/federation/v1/3pid/onbind", public=True)
async def onbind(request: web.Request) -> web.Response:
    body = await json_body(request)
    await third_party_invites.on_bind(get_hs(request), body)
    return json_response({})
