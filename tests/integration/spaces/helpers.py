"""Building spaces with matrix-nio, and reading the hierarchy over raw HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from nio import RoomCreateResponse, RoomPutStateResponse

from tests.schema import assert_matches_schema

V1 = "/_matrix/client/v1"


def join_rule(rule: str, **extra) -> dict[str, Any]:
    return {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": rule, **extra}}


WORLD_READABLE = {
    "type": "m.room.history_visibility",
    "state_key": "",
    "content": {"history_visibility": "world_readable"},
}


async def make_room(client, name: str, *state: dict, space: bool = False) -> str:
    resp = await client.room_create(name=name, space=space, initial_state=list(state))
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


async def link(client, space_id: str, child_id: str, via: list[str], **content) -> None:
    resp = await client.room_put_state(
        space_id, "m.space.child", {"via": via, **content}, state_key=child_id
    )
    assert isinstance(resp, RoomPutStateResponse), resp


async def hierarchy(server, token: str, room_id: str, **params) -> tuple[int, dict]:
    """GET /hierarchy; a 200 answer is checked against the spec's schema."""
    query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
    path = f"{V1}/rooms/{quote(room_id)}/hierarchy" + (f"?{query}" if query else "")
    status, body = await server.request("GET", path, token=token)
    if status == 200:
        assert_matches_schema("space_hierarchy.yaml", "/rooms/{roomId}/hierarchy", "get", 200, body)
    return status, body


def names(body: dict) -> list[str]:
    return [r.get("name") for r in body["rooms"]]
