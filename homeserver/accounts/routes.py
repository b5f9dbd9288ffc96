"""Accounts: registration, login, devices, passwords, profiles, account data, filters.

Each module below owns a slice of the URL space with its own RouteTable; this table is
what homeserver.app mounts.
"""

from __future__ import annotations

from homeserver.accounts import login, registration
from homeserver.http.routes import RouteTable

routes = RouteTable()
for _module in (registration, login):
    routes.routes.extend(_module.routes.routes)
