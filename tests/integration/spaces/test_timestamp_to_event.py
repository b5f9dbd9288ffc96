"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event, and the federation endpoint
another server asks."""

from __future__ import annotations

from urllib.parse import quote

from nio import RoomMessagesResponse, RoomSendResponse

from tests.integration.federation.helpers import signed_request
from tests.integration.spaces.helpers import WORLD_READABLE, join_rule, make_room
from tests.schema import assert_matches_schema

V1 = "/_matrix/client/v1"


async def _lookup(server, token: str | None, room_id: str, query: str) -> tuple[int, dict]:
    path = f"{V1}/rooms/{quote(room_id)}/timestamp_to_event?{query}"
    status, body = await server.request("GET", path, token=token)
    if status == 200:
        assert_matches_schema(
            "room_event_by_timestamp.yaml", "/rooms/{roomId}/timestamp_to_event", "get", 200, body
        )
    return status, body


def _expected(timeline: list[tuple[str, int]], ts: int, forwards: bool) -> str | None:
    """The spec's answer from the room's timeline (oldest first): the first event at or
    after `ts`, or the last at or before it."""
    if forwards:
        return next((e for e, t in timeline if t >= ts), None)
    return next((e for e, t in reversed(timeline) if t <= ts), None)


async def test_closest_event_in_each_direction(server):
    alice = await server.client("alice")
    room = await make_room(alice, "History")
    for i in range(5):
        resp = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": str(i)})
        assert isinstance(resp, RoomSendResponse)
    resp = await alice.room_messages(room, start="", limit=50, direction="f")
    assert isinstance(resp, RoomMessagesResponse), resp
    timeline = [(e.event_id, e.server_timestamp) for e in resp.chunk]
    assert len(timeline) >= 10
    for _, ts in timeline[::2]:
        for probe in (ts - 1, ts, ts + 1):
            for way in ("f", "b"):
                want = _expected(timeline, probe, way == "f")
                status, body = await _lookup(
                    server, alice.access_token, room, f"ts={probe}&dir={way}"
                )
                if want is None:
                    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
                    continue
                assert status == 200 and body["event_id"] == want, (probe, way, body)
                assert body["origin_server_ts"] == dict(timeline)[want]
    first, last = timeline[0][1], timeline[-1][1]
    status, body = await _lookup(server, alice.access_token, room, f"ts={last + 10**6}&dir=f")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await _lookup(server, alice.access_token, room, f"ts={first - 1}&dir=b")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_bad_requests_and_readers(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    private = await make_room(alice, "Private")
    readable = await make_room(alice, "Readable", join_rule("invite"), WORLD_READABLE)
    token = alice.access_token
    for query, errcode in (
        ("ts=1&dir=x", "M_INVALID_PARAM"),
        ("ts=soon&dir=f", "M_INVALID_PARAM"),
        ("dir=f", "M_MISSING_PARAM"),
        ("ts=1", "M_MISSING_PARAM"),
        ("ts=-5&dir=f", "M_INVALID_PARAM"),
    ):
        status, body = await _lookup(server, token, private, query)
        assert (status, body["errcode"]) == (400, errcode), query
    status, body = await _lookup(server, bob.access_token, private, "ts=1&dir=f")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await _lookup(server, bob.access_token, "!nope:test.local", "ts=1&dir=f")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await _lookup(server, bob.access_token, readable, "ts=1&dir=f")
    assert status == 200 and body["event_id"].startswith("$")
    status, body = await _lookup(server, None, readable, "ts=1&dir=f")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_served_to_a_server_in_the_room(pair, ca):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    room = await make_room(alice, "Shared", join_rule("public"))
    lonely = await make_room(alice, "Alone", join_rule("public"))
    bob = await hs2.client("bob")
    status, body = await hs2.request(
        "POST",
        f"/_matrix/client/v3/join/{quote(room)}?via={hs1.server_name}",
        token=bob.access_token,
        json={},
    )
    assert status == 200, body
    path = f"/_matrix/federation/v1/timestamp_to_event/{quote(room, safe='')}"
    status, body = await signed_request(hs2, hs1, ca, "GET", path + "?ts=0&dir=f")
    assert status == 200, body
    assert_matches_schema(
        "server-server/events.yaml", "/timestamp_to_event/{roomId}", "get", 200, body
    )
    create = await hs1.hs.events.current_state_event(room, "m.room.create")
    assert create is not None and body["event_id"] == create.event_id
    status, body = await signed_request(hs2, hs1, ca, "GET", path + "?ts=0&dir=b")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await signed_request(hs2, hs1, ca, "GET", path + "?ts=0&dir=sideways")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    lonely_path = f"/_matrix/federation/v1/timestamp_to_event/{quote(lonely, safe='')}"
    status, body = await signed_request(hs2, hs1, ca, "GET", lonely_path + "?ts=0&dir=f")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
