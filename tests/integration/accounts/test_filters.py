"""Filters: nio's upload_filter, reading back, ownership and bad shapes."""

from urllib.parse import quote

from nio import UploadFilterResponse

from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"


async def test_upload_and_get_filter(server):
    alice = await server.client("alice")
    room = {
        "timeline": {"limit": 10, "types": ["m.room.message"]},
        "state": {"lazy_load_members": True},
    }
    resp = await alice.upload_filter(room=room, account_data={"not_types": ["m.secret"]})
    assert isinstance(resp, UploadFilterResponse), resp
    path = f"{V3}/user/{quote(alice.user_id)}/filter/{resp.filter_id}"
    status, body = await server.request("GET", path, token=alice.access_token)
    assert status == 200 and body["room"] == room
    assert_matches_schema("filter.yaml", "/user/{userId}/filter/{filterId}", "get", 200, body)

    # nio syncs with the stored filter.
    sync = await alice.sync(timeout=0, sync_filter=resp.filter_id)
    assert sync.next_batch

    bob = await server.client("bob")
    status, body = await server.request("GET", path, token=bob.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    for missing in ("999999", "abc"):
        status, body = await server.request(
            "GET", f"{V3}/user/{quote(alice.user_id)}/filter/{missing}", token=alice.access_token
        )
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_bad_filters_store_nothing(server):
    alice = await server.client("carol")
    path = f"{V3}/user/{quote(alice.user_id)}/filter"
    bad = [
        {"event_fields": "content"},
        {"event_format": "xml"},
        {"room": []},
        {"room": {"timeline": {"limit": -1}}},
        {"room": {"state": {"types": [1, 2]}}},
        {"presence": "none"},
        {"room": {"rooms": "!a:b"}},
    ]
    for body in bad:
        status, got = await server.request("POST", path, token=alice.access_token, json=body)
        assert status == 400 and got["errcode"] == "M_BAD_JSON", body
    status, got = await server.request("POST", path, token=alice.access_token, data=b"{{")
    assert status == 400 and got["errcode"] == "M_NOT_JSON"
    other = await server.client("dave")
    status, got = await server.request("POST", path, token=other.access_token, json={})
    assert status == 403 and got["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetchval("SELECT count(*) FROM filters") == 0
