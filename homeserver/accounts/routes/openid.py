"""POST /user/{userId}/openid/request_token (openid.yaml): a token that a third-party
service exchanges, at GET /_matrix/federation/v1/openid/userinfo, for the user's ID."""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from homeserver.http.auth import Requester, hash_token
from homeserver.http.context import get_hs
from homeserver.http.errors import forbidden
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

TOKEN_LIFETIME_S = 3600


@routes.post("/user/{user_id}/openid/request_token", ratelimit=True)
async def request_token(request: web.Request, requester: Requester) -> web.Response:
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("You can only request OpenID tokens for yourself")
    await json_body(request, allow_empty=True)
    hs = get_hs(request)
    token = secrets.token_urlsafe(32)
    now = int(time.time() * 1000)
    expires = now + TOKEN_LIFETIME_S * 1000
    await hs.accounts.openid_tokens.add(hash_token(token), requester.user_id, expires, now)
    return json_response(
        {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": hs.server_name,
            "expires_in": TOKEN_LIFETIME_S,
        }
    )
