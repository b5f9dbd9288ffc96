"""Bad input on the wire: each gets the spec's Matrix error, and nothing is stored."""

from __future__ import annotations

import aiohttp
from nio import RoomCreateResponse


async def _room(server):
    alice = await server.client("alice")
    created = await alice.room_create(name="r")
    assert isinstance(created, RoomCreateResponse)
    return alice, created.room_id


async def _event_count(server) -> int:
    return await server.db.fetchval("SELECT count(*) FROM events")


async def test_unknown_endpoint_and_method(server):
    status, body = await server.request("GET", "/_matrix/client/v3/no/such/thing")
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    status, body = await server.request("DELETE", "/_matrix/client/v3/sync")
    assert (status, body["errcode"]) == (405, "M_UNRECOGNIZED")


async def test_tokens(server):
    status, body = await server.request("GET", "/_matrix/client/v3/sync")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await server.request("GET", "/_matrix/client/v3/sync", token="hs_bogus")
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", False)
    alice = await server.client("alice")
    # matrix-nio's way: the token as a query parameter.
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/account/whoami?access_token={alice.access_token}"
    )
    assert status == 200 and body["user_id"] == alice.user_id


async def test_malformed_json_changes_nothing(server):
    alice, room_id = await _room(server)
    before = await _event_count(server)
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
        token=alice.access_token,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    assert await _event_count(server) == before


async def test_wrong_types_and_missing_fields(server):
    alice, room_id = await _room(server)
    rooms_before = await server.db.fetchval("SELECT count(*) FROM rooms")
    status, body = await server.request(
        "POST", "/_matrix/client/v3/createRoom", token=alice.access_token, json={"name": 5}
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    assert await server.db.fetchval("SELECT count(*) FROM rooms") == rooms_before
    before = await _event_count(server)
    status, body = await server.request(
        "POST", f"/_matrix/client/v3/rooms/{room_id}/invite", token=alice.access_token, json={}
    )
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    assert await _event_count(server) == before


async def test_oversized_event_is_refused(server):
    alice, room_id = await _room(server)
    before = await _event_count(server)
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/big",
        token=alice.access_token,
        json={"msgtype": "m.text", "body": "x" * 70_000},
    )
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert await _event_count(server) == before


async def test_forbidden_actions_store_nothing(server):
    alice, room_id = await _room(server)
    mallory = await server.client("mallory")
    before = await _event_count(server)
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
        token=mallory.access_token,
        json={"msgtype": "m.text", "body": "hi"},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Invited and joined, but without the power to rename the room.
    await alice.room_invite(room_id, mallory.user_id)
    await mallory.join(room_id)
    before = await _event_count(server)
    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.name",
        token=mallory.access_token,
        json={"name": "pwned"},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await _event_count(server) == before
    name = await server.db.fetchval(
        "SELECT e.json FROM current_state c JOIN events e USING (event_id)"
        " WHERE c.room_id = $1 AND c.type = 'm.room.name'",
        room_id,
    )
    assert "pwned" not in name


async def test_rate_limit(make_server):
    server = await make_server(
        rate_limits={"enabled": True, "per_user": {"per_second": 0.1, "burst": 3}}
    )
    alice = await server.client("alice")
    statuses = []
    for _ in range(6):
        status, body = await server.request(
            "POST", "/_matrix/client/v3/createRoom", token=alice.access_token, json={}
        )
        statuses.append(status)
        if status == 429:
            assert body["errcode"] == "M_LIMIT_EXCEEDED"
            assert body["retry_after_ms"] > 0
    assert 429 in statuses and statuses[0] == 200


async def test_cors_preflight_and_headers(server):
    async with aiohttp.ClientSession() as http:
        async with http.options(
            server.base_url + "_matrix/client/v3/sync",
            headers={
                "Origin": "https://app.element.io",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        async with http.get(server.base_url + "_matrix/client/versions") as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_metrics_count_client_requests(server):
    alice = await server.client("alice")
    await alice.sync(timeout=0)
    async with aiohttp.ClientSession() as http:
        # HTTP's other methods (WebDAV's, say) do not each become a metric series.
        for other in ("PROPFIND", "MKCOL"):
            async with http.request(other, server.base_url + "_matrix/client/versions") as r:
                assert r.status == 405
                assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
        async with http.get(server.metrics_url) as resp:
            text = await resp.text()
    assert resp.status == 200
    assert (
        'matrix_http_requests_total{endpoint="/_matrix/client/v3/sync",method="GET",status="200"}'
        in text
    )
    assert "PROPFIND" not in text and "MKCOL" not in text
    assert 'method="OTHER"' in text
    assert "matrix_events_persisted_total" in text
    assert 'matrix_db_pool_connections{state="open"}' in text
    assert "matrix_sync_longpolls_open" in text


async def test_no_secret_reaches_the_logs(server, caplog):
    caplog.set_level("DEBUG")
    alice = await server.client("alice", password="hunter2-very-secret")
    room = await alice.room_create(name="Secret")
    await alice.room_send(
        room.room_id, "m.room.message", {"msgtype": "m.text", "body": "the plaintext"}
    )
    await server.request("GET", f"/_matrix/client/v3/sync?access_token={alice.access_token}")
    # An internal error is logged with its request id, never with the query string.
    server_side = ("homeserver", "federation", "e2ee", "storage", "aiohttp", "asyncpg")
    logged = "\n".join(
        r.getMessage() for r in caplog.records if r.name.split(".")[0] in server_side
    )
    assert logged, "the server logged nothing at DEBUG: the test would prove nothing"
    for secret in ("hunter2-very-secret", alice.access_token, "the plaintext"):
        assert secret not in logged
