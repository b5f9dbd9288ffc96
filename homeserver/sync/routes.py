from __future__ import annotations

from homeserver.http.routes import RouteTable

routes = RouteTable()
