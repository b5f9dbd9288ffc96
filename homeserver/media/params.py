"""Query parameters that the client media routes (routes/client.py) and the federation
media routes (federation/routes/media.py) read alike."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.errors import invalid_param
from homeserver.http.request import required_query_int


def thumbnail_params(request: web.Request) -> tuple[int, int, str]:
    """width, height and method of a thumbnail request (client and federation alike)."""
    width = required_query_int(request, "width", minimum=1, maximum=4096)
    height = required_query_int(request, "height", minimum=1, maximum=4096)
    method = request.query.get("method", "scale")
    if method not in ("crop", "scale"):
        raise invalid_param("'method' must be 'crop' or 'scale'")
    return width, height, method
