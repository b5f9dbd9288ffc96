"""The admin API's routes, one module per area; this table, their union, is what
homeserver.app mounts."""

from __future__ import annotations

from homeserver.admin.routes import (
    account_validity,
    audit,
    external,
    federation,
    media,
    register,
    registration_tokens,
    reports,
    rooms,
    server_notices,
    users,
)
from homeserver.http.routes import RouteTable

routes = RouteTable()
for _module in (
    users,
    rooms,
    media,
    reports,
    server_notices,
    federation,
    audit,
    registration_tokens,
    register,
    external,
    account_validity,
):
    routes.routes.extend(_module.routes.routes)
