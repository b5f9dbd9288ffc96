"""Accounts: registration, login, devices, passwords, profiles, account data, filters,
tags, registration tokens, shared-secret registration and OpenID tokens.

Each module of this package owns a slice of the URL space with its own RouteTable; this
table, their union, is what homeserver.app mounts. Logic that other code calls lives
outside routes/ (service.py, uia.py, passwords.py, membership.py, ...).
"""

from __future__ import annotations

from homeserver.accounts.routes import (
    account,
    account_data,
    admin,
    devices,
    filters,
    login,
    openid,
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
    openid,
):
    routes.routes.extend(_module.routes.routes)
