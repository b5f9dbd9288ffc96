"""Endpoints that describe the server: versions, well-known, capabilities."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()


@routes.get("/_matrix/client/versions", auth=False, raw_path=True)
async def versions(_request: web.Request) -> web.Response:
    return json_response(
        {
            "versions": [
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
            ],
            "unstable_features": {},
        }
    )
