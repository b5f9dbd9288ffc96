"""Accounts: registration, login, devices, passwords, profiles, account data, filters,
tags and OpenID tokens (the admin API, registration tokens and shared-secret
registration included, is homeserver/admin).

Each module of this package owns a slice of the URL space with its own RouteTable; this
table, their union, is what homeserver.app mounts. Logic that other code calls lives
outside routes/ (service.py, uia.py, passwords.py, membership.py, ...).
"""

from __future__ import annotations

from homeserver.accounts.routes import (
    account,
    account_data,
    devices,
    filters,
    login,
    openid,
    profile,
    registration,
    sso,
    tags,
    threepids,
    validity,
)
from homeserver.http.routes import RouteTable

routes = RouteTable()
for _module in (
    registration,
    login,
    sso,
    devices,
    account,
    profile,
    filters,
    account_data,
    tags,
    openid,
    threepids,
    validity,
):
    routes.routes.extend(_module.routes.routes)
