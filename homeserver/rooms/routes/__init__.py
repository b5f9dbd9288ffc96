"""Room routes: create, membership, send, state, history, redaction (rooms.py); typing,
receipts and read markers (ephemeral.py).

This table is what homeserver.app mounts; the logic the handlers call lives outside
routes/ (creation.py, membership.py, history.py, redaction.py, ephemeral.py, ...).
"""

from __future__ import annotations

from homeserver.http.routes import RouteTable
from homeserver.rooms.routes import ephemeral, rooms

routes = RouteTable()
for _module in (rooms, ephemeral):
    routes.routes.extend(_module.routes.routes)
