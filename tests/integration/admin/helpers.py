"""An admin caller for the admin API tests: raw HTTP (the admin API is the wire), on a
server whose `admins` names @boss."""

from __future__ import annotations

from nio import AsyncClient, RoomCreateResponse, RoomSendResponse

from tests.harness import TestServer

ADMIN = "/_synapse/admin"
BOSS = "@boss:test.local"


class Admin:
    def __init__(self, server: TestServer, client: AsyncClient):
        self.server = server
        self.client = client
        self.token = client.access_token

    async def __call__(self, method: str, path: str, json=None, *, token: str | None = None):
        return await self.server.request(method, ADMIN + path, token=token or self.token, json=json)

    async def audit(self, action: str) -> list[dict]:
        """The audit log's entries for one action, newest first."""
        status, body = await self("GET", f"/v1/audit_log?action={action}&limit=1000")
        assert status == 200, body
        return body["entries"]


async def admin_server(make_server, **overrides) -> tuple[TestServer, Admin]:
    server = await make_server(admins=[BOSS], **overrides)
    boss = await server.client("boss")
    return server, Admin(server, boss)


async def create_room(client: AsyncClient, **kw) -> str:
    resp = await client.room_create(**kw)
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


async def send_text(client: AsyncClient, room_id: str, body: str) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def forbidden_for(server: TestServer, token: str, calls: list[tuple[str, str]]) -> None:
    """Each (method, path) answers 403 M_FORBIDDEN to a caller who is not an admin."""
    for method, path in calls:
        status, body = await server.request(method, ADMIN + path, token=token, json={})
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (method, path, body)
