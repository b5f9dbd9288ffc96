"""Bad sliding sync requests answer a Matrix error (or a clamped value) and store nothing."""

from __future__ import annotations

from tests.integration.sliding_sync.helpers import PATH, Connection, list_ids


async def _stored(server) -> tuple[int, int, int]:
    return (
        await server.db.fetchval("SELECT count(*) FROM sliding_sync_connections"),
        await server.db.fetchval("SELECT count(*) FROM sliding_sync_positions"),
        await server.db.fetchval("SELECT count(*) FROM sliding_sync_rooms"),
    )


BAD_BODIES = [
    {"lists": {"a": {"ranges": [[5, 2]]}}},  # reversed
    {"lists": {"a": {"ranges": [[-1, 2]]}}},
    {"lists": {"a": {"ranges": [[0, "9"]]}}},
    {"lists": {"a": {"ranges": [[0, 1, 2]]}}},
    {"lists": {"a": {"ranges": "0-9"}}},
    {"lists": {"a": {"timeline_limit": -1}}},
    {"lists": {"a": {"timeline_limit": "5"}}},
    {"lists": {"a": {"required_state": [["m.room.name"]]}}},
    {"lists": {"a": {"required_state": [["m.room.name", 1]]}}},
    {"lists": {"a": {"filters": {"is_dm": "yes"}}}},
    {"lists": {"a": {"filters": {"room_types": [1]}}}},
    {"lists": {"a": {"filters": {"spaces": "!a:b"}}}},
    {"lists": {"a": "all"}},
    {"lists": []},
    {"room_subscriptions": {"not-a-room": {"timeline_limit": 1}}},
    {"room_subscriptions": {"!a:b": []}},
    {"conn_id": 5},
    {"conn_id": "x" * 300},
    {"extensions": {"to_device": {"enabled": True, "since": "abc"}}},
    {"extensions": {"typing": {"enabled": True, "lists": "all"}}},
    {"extensions": {"e2ee": {"enabled": "true"}}},
]


async def test_malformed_bodies_are_refused(server):
    alice = await server.client("alice")
    await alice.room_create()
    conn = Connection(server, alice.access_token)
    await conn.sync({})
    before = await _stored(server)
    for body in BAD_BODIES:
        for pos in (None, conn.pos):  # a new connection, and the next request of one
            status, resp = await conn.raw(body, pos=pos)
            assert (status, resp.get("errcode")) == (400, "M_BAD_JSON"), (body, resp)
    assert await _stored(server) == before


async def test_wire_errors_store_nothing(server):
    alice = await server.client("alice")
    conn = Connection(server, alice.access_token)
    status, resp = await server.request(
        "POST", PATH, token=alice.access_token, data=b"{not json", headers={}
    )
    assert (status, resp["errcode"]) == (400, "M_NOT_JSON")
    status, resp = await server.request("POST", PATH, json={})
    assert (status, resp["errcode"]) == (401, "M_MISSING_TOKEN")
    status, resp = await server.request(
        "POST", PATH + "?timeout=soon", token=alice.access_token, json={}
    )
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM")
    # A pos that no connection handed out, or one of another conn_id.
    status, resp = await conn.raw({}, pos="12345")
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")
    assert await _stored(server) == (0, 0, 0)
    await conn.sync({})
    other = Connection(server, alice.access_token, conn_id="unknown-conn")
    before = await _stored(server)
    status, resp = await other.raw({}, pos=conn.pos)
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")
    # Another user's pos is unknown too.
    bob = await server.client("bob")
    status, resp = await Connection(server, bob.access_token).raw({}, pos=conn.pos)
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN_POS")
    assert await _stored(server) == before


async def test_unknown_fields_are_ignored_and_sizes_clamped(server):
    alice = await server.client("alice")
    room = (await alice.room_create()).room_id
    conn = Connection(server, alice.access_token)
    resp = await conn.sync(
        {
            "unknown_top_level": {"x": 1},
            "lists": {
                "all": {
                    "ranges": [[0, 10**15], [3, 7]],
                    "timeline_limit": 5000,
                    "slow_get_all_rooms": True,
                    "bump_event_types": ["m.room.message"],
                    "filters": {"future_filter": True},
                }
            },
            "extensions": {"future_extension": {"enabled": True}},
        }
    )
    assert resp["lists"]["all"]["count"] == 1
    assert list_ids(resp, "all") == [room]
    assert resp["lists"]["all"]["ops"][1]["room_ids"] == []
    assert resp["extensions"] == {}
    configs = await server.db.fetch("SELECT config FROM sliding_sync_rooms")
    assert [c["config"] for c in configs] == ['{"rs":[],"tl":1000}']
    # An empty body is a valid request (no lists, no extensions).
    status, resp = await server.request("POST", PATH, token=alice.access_token)
    assert status == 200 and resp["rooms"] == {}
