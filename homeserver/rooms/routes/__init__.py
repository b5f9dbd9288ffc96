"""Room routes: create, membership, send, state, history, redaction (rooms.py).

This table is what homeserver.app mounts; the logic the handlers call lives outside
routes/ (creation.py, membership.py, history.py, redaction.py, ...).
"""

from __future__ import annotations

from homeserver.http.routes import RouteTable
from homeserver.rooms.routes import rooms

routes = RouteTable()
for _module in (rooms,):
    routes.routes.extend(_module.routes.routes)
