"""Media routes: the Client-Server media API (client.py) and the Synapse-shaped admin API
(admin.py). This table, their union, is what homeserver.app mounts; the federation media
endpoints are federation/routes/media.py."""

from __future__ import annotations

from homeserver.http.routes import RouteTable
from homeserver.media.routes import admin, client

routes = RouteTable()
for _module in (client, admin):
    routes.routes.extend(_module.routes.routes)
