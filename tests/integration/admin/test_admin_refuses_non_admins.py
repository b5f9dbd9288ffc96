"""Every route under /_synapse/admin, with every method it serves, refuses a caller who is
not a server admin (403 M_FORBIDDEN) or has no token (401), and changes nothing: the
sweep reads the routes from the running app, so a route added later is covered too."""

from __future__ import annotations

import re

from tests.integration.admin.helpers import ADMIN, admin_server

# Served without an admin token, as Synapse does: the version, and shared-secret
# registration (its own HMAC authentication).
PUBLIC = {("GET", "/_synapse/admin/v1/server_version"), ("GET", "/_synapse/admin/v1/register"),
          ("POST", "/_synapse/admin/v1/register")}  # fmt: skip
SAMPLE = {
    "user_id": "@victim:test.local",
    "room_id": "!room:test.local",
    "room_id_or_alias": "!room:test.local",
    "server_name": "test.local",
    "media_id": "abcdefghijklmnop",
}


def _fill(template: str, victim: str, room_id: str) -> str:
    values = {**SAMPLE, "user_id": victim, "room_id": room_id, "room_id_or_alias": room_id}
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: values.get(m.group(1), "x1"), template)


async def test_every_admin_route_refuses_non_admins_and_changes_nothing(make_server):
    server, admin = await admin_server(make_server)
    mallory = await server.client("mallory")
    victim = await server.client("victim")
    room_id = (await victim.room_create(name="victim's room")).room_id
    routes = sorted(
        {
            (route.method, route.resource.canonical)
            for route in server.runners[0].app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith(ADMIN)
            and route.method not in ("HEAD", "OPTIONS", "*")
        }
    )
    assert len(routes) > 60, routes
    audit_before = await server.db.fetchval("SELECT count(*) FROM admin_audit_log")
    users_before = await server.db.fetch("SELECT * FROM users ORDER BY user_id")
    wrong = []
    for method, template in routes:
        if (method, template) in PUBLIC:
            continue
        path = _fill(template, victim.user_id, room_id)
        body = {} if method in ("POST", "PUT") else None
        status, answer = await server.request(method, path, token=mallory.access_token, json=body)
        if (status, answer.get("errcode")) != (403, "M_FORBIDDEN"):
            wrong.append(f"{method} {template}: {status} {answer}")
        status, answer = await server.request(method, path, json=body)
        if status != 401:
            wrong.append(f"{method} {template} without a token: {status} {answer}")
    assert not wrong, "\n".join(wrong)
    assert await server.db.fetchval("SELECT count(*) FROM admin_audit_log") == audit_before
    assert await server.db.fetch("SELECT * FROM users ORDER BY user_id") == users_before
    assert await victim.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "still mine"}
    )
