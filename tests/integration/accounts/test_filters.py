"""Filters: nio's upload_filter, reading back, ownership and bad shapes."""

import json
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
        {"room": {"timeline": {"rooms": ["not_a_room_id"]}}},
        {"room": {"not_rooms": ["#alias:b"]}},
        {"room": {"timeline": {"senders": ["not_a_sender_id"]}}},
        {"presence": {"not_senders": ["x"]}},
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


async def _sync(server, client, filter_spec, since=None):
    path = "/_matrix/client/v3/sync?filter=" + quote(json.dumps(filter_spec))
    if since:
        path += f"&since={since}"
    status, body = await server.request("GET", path, token=client.access_token)
    assert status == 200, body
    return body


async def test_timeline_filter_applies_before_the_limit(server):
    """A timeline filter's limit counts the events it keeps: the one message behind a dozen
    events of other types is found, and the timeline is not limited (SyTest)."""
    alice = await server.client()
    room_id = (await alice.room_create()).room_id
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "m"})
    for i in range(12):
        await alice.room_send(room_id, "a.made.up.filler.type", {"i": i})
    spec = {"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}}
    body = await _sync(server, alice, spec)
    timeline = body["rooms"]["join"][room_id]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == [sent.event_id]
    assert timeline["limited"] is False


async def test_filtered_gapped_sync_reports_state_changes(server):
    """State the timeline filter hides still reaches the client in `state` of a gapped
    incremental sync."""
    alice = await server.client()
    room_id = (await alice.room_create()).room_id
    await alice.room_put_state(room_id, "a.madeup.test.state", {"k": 1}, state_key="changes")
    await alice.room_put_state(room_id, "a.madeup.test.state", {"k": 1}, state_key="same")
    spec = {
        "room": {
            "timeline": {"types": ["a.made.up.filler.type"], "limit": 1},
            "state": {"types": ["a.madeup.test.state"]},
        }
    }
    body = await _sync(server, alice, spec)
    assert len(body["rooms"]["join"][room_id]["state"]["events"]) == 2
    await alice.room_put_state(room_id, "a.madeup.test.state", {"k": 2}, state_key="changes")
    for i in range(3):
        await alice.room_send(room_id, "a.made.up.filler.type", {"i": i})
    body = await _sync(server, alice, spec, since=body["next_batch"])
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    [state] = room["state"]["events"]
    assert state["state_key"] == "changes" and state["content"] == {"k": 2}


def _members(room: dict) -> set[str]:
    return {
        e["state_key"]
        for e in room.get("state", {}).get("events", [])
        if e["type"] == "m.room.member"
    }


async def test_lazy_loading_incremental_sync_sends_new_senders_once(server):
    alice = await server.client()
    bob = await server.client()
    carol = await server.client()
    room_id = (await alice.room_create(invite=[bob.user_id, carol.user_id])).room_id
    await bob.join(room_id)
    await carol.join(room_id)
    for i in range(10):
        await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}}}
    body = await _sync(server, alice, lazy)
    assert _members(body["rooms"]["join"][room_id]) == {alice.user_id, bob.user_id}

    await carol.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "c"})
    body = await _sync(server, alice, lazy, since=body["next_batch"])
    assert _members(body["rooms"]["join"][room_id]) == {carol.user_id}

    # Bob and Carol again: their member events were sent already.
    await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "b"})
    await carol.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "c"})
    body = await _sync(server, alice, lazy, since=body["next_batch"])
    assert _members(body["rooms"]["join"][room_id]) == set()

    # Unless the filter asks for redundant members.
    redundant = {
        "room": {
            "state": {"lazy_load_members": True, "include_redundant_members": True},
            "timeline": {"limit": 10},
        }
    }
    await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "b"})
    body = await _sync(server, alice, redundant, since=body["next_batch"])
    assert _members(body["rooms"]["join"][room_id]) == {bob.user_id}


async def test_lazy_loading_gapped_sync_includes_members_from_the_gap(server):
    alice = await server.client()
    bob = await server.client()
    carol = await server.client()
    dave = await server.client()
    room_id = (await alice.room_create(invite=[bob.user_id, carol.user_id, dave.user_id])).room_id
    await bob.join(room_id)
    await carol.join(room_id)
    for i in range(10):
        await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}}}
    body = await _sync(server, alice, lazy)
    await dave.join(room_id)
    for i in range(12):
        await carol.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    body = await _sync(server, alice, lazy, since=body["next_batch"])
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    # Carol speaks in the timeline; Dave joined in the gap.
    assert _members(room) == {carol.user_id, dave.user_id}


async def test_federation_event_format(server):
    alice = await server.client()
    room_id = (await alice.room_create()).room_id
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "f"})
    spec = {"event_format": "federation", "room": {"timeline": {"limit": 1}}}
    body = await _sync(server, alice, spec)
    [ev] = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert ev["event_id"] == sent.event_id and ev["room_id"] == room_id
    assert {"prev_events", "auth_events", "depth", "hashes", "signatures"} <= ev.keys()
    body = await _sync(server, alice, {"room": {"timeline": {"limit": 1}}})
    [ev] = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert "hashes" not in ev and "room_id" not in ev


async def test_filter_accepts_room_ids_without_server_part(server):
    """Room IDs of room version 12 on are '!' and a hash, no ':server'."""
    alice = await server.client()
    path = f"{V3}/user/{quote(alice.user_id)}/filter"
    status, body = await server.request(
        "POST", path, token=alice.access_token, json={"room": {"rooms": ["!aGashOfTheCreate"]}}
    )
    assert status == 200 and body["filter_id"]
