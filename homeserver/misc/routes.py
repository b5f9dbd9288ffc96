"""Endpoints that describe the server: versions, well-known, capabilities, VoIP, 3PN."""

from __future__ import annotations

from aiohttp import web

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, unrecognized
from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable
from homeserver.misc.turn import turn_credentials

routes = RouteTable()

# The spec versions whose Client-Server API this server implements.
SPEC_VERSIONS = (
    "r0.6.1",
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
    "v1.12",
)

# Unstable features whose endpoints this server serves, one line each: clients switch on
# behaviour by them (Element offers cross-signing set-up only when it sees
# org.matrix.e2e_cross_signing), so a flag here is a promise.
UNSTABLE_FEATURES: dict[str, bool] = {
    "org.matrix.e2e_cross_signing": True,
    # Simplified sliding sync (MSC4186): Element X refuses a server without it.
    "org.matrix.simplified_msc3575": True,
    # Room summaries (MSC3266): GET /v1/room_summary and its unstable paths.
    "im.nheko.summary": True,
}


@routes.get("/_matrix/client/versions", auth=False, raw_path=True)
async def versions(_request: web.Request) -> web.Response:
    return json_response({"versions": list(SPEC_VERSIONS), "unstable_features": UNSTABLE_FEATURES})


@routes.get("/.well-known/matrix/client", auth=False, raw_path=True)
async def well_known_client(request: web.Request) -> web.Response:
    base_url = get_hs(request).config.base_url.rstrip("/")
    return json_response({"m.homeserver": {"base_url": base_url}})


@routes.get("/capabilities")
async def capabilities(request: web.Request, _requester: Requester) -> web.Response:
    config = get_hs(request).config
    available = {
        version: "stable" if rv.stable else "unstable"
        for version, rv in KNOWN_ROOM_VERSIONS.items()
    }
    return json_response(
        {
            "capabilities": {
                "m.change_password": {"enabled": True},
                "m.room_versions": {
                    "default": config.default_room_version,
                    "available": available,
                },
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": get_hs(request).accounts.threepids.enabled},
                "m.get_login_token": {"enabled": False},
            }
        }
    )


@routes.get("/voip/turnServer")
async def turn_server(request: web.Request, requester: Requester) -> web.Response:
    voip = get_hs(request).config.voip
    if not voip.turn_uris:
        # MSC4166 (spec v1.11): "no TURN here" is 404 M_NOT_FOUND, since a 200 must carry
        # username/password/uris/ttl. matrix-js-sdk then asks again every 10 minutes, which
        # is cheap; it stops only on 403, which would tell the user the account is barred.
        raise MatrixError(404, "M_NOT_FOUND", "No TURN server is configured")
    return json_response(turn_credentials(voip, requester.user_id))


@routes.get("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", auth=False, raw_path=True)
async def auth_issuer(_request: web.Request) -> web.Response:
    # No OIDC-native (MSC3861) authentication: clients fall back to password login.
    raise unrecognized("This server does not delegate authentication")
