"""How handlers reach the composition root from a request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from homeserver.app import Homeserver

HS_KEY: web.AppKey = web.AppKey("homeserver", object)
REQUEST_ID_KEY: web.RequestKey = web.RequestKey("request_id", str)
REQUESTER_KEY: web.RequestKey = web.RequestKey("requester", object)


def get_hs(request: web.Request) -> Homeserver:
    return request.config_dict[HS_KEY]
