"""Media routes: the Client-Server media API (client.py); this table is what
homeserver.app mounts. The media admin API is homeserver/admin/routes/media.py, the
federation media endpoints federation/routes/media.py."""

from __future__ import annotations

from homeserver.http.routes import RouteTable
from homeserver.media.routes import client

routes = RouteTable()
for _module in (client,):
    routes.routes.extend(_module.routes.routes)
