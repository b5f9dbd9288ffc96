"""Accounts: registration, login, devices, passwords, profiles, account data, filters.

Each module below owns a slice of the URL space with its own RouteTable; this table is
what homeserver.app mounts.
"""

from __future__ import annotations

from homeserver.accounts import (
    account,
    account_data,
    admin,
    devices,
    filters,
    login,
    profile,
    registration,
    shared_secret,
    tags,
)
from homeserver.http.routes import RouteTable

routes = RouteTable()
for _module in (
    registration,
    login,
    devices,
    account,
    profile,
    filters,
    account_data,
    tags,
    admin,
    shared_secret,
):
    routes.routes.extend(_module.routes.routes)
