"""GET /_matrix/federation/v1/openid/userinfo (server-server openid.yaml).

Unlike the rest of the federation API this is not a server-to-server request: the
caller is a third-party service (an integration manager, a widget) holding a token a
user gave it, so there is no X-Matrix signature or origin to check. The token is the
credential, and the answer is only the user's ID.

Mounted on the federation listener and on the client listener: the third party reaches
the server at whatever address the user's client uses (Synapse serves it on both too),
and SyTest calls it at the client address.
"""

from __future__ import annotations

import time

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.auth import hash_token
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError
from homeserver.http.request import json_response

routes = FederationRouteTable()


# Public (openid.yaml has no security): the caller is not a server; the access_token
# in the query is the credential, checked below.
@routes.get("/_matrix/federation/v1/openid/userinfo", public=True)
async def userinfo(request: web.Request) -> web.Response:
    token = request.query.get("access_token")
    if not token:
        # openid.yaml answers only 401 for a token that does not identify a user.
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing 'access_token'")
    user_id = await get_hs(request).accounts.openid_tokens.user_for(
        hash_token(token), int(time.time() * 1000)
    )
    if user_id is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
    return json_response({"sub": user_id})
