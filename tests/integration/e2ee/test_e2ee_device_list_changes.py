"""Who hears of device-list changes: GET /keys/changes reports what /sync's device_lists
does between the same tokens, and a user's own user-signing key and signatures of other
users' keys are news only to that user."""

from __future__ import annotations

from nio import JoinResponse, RoomCreateResponse, RoomLeaveResponse, RoomPreset, SyncResponse

from tests.harness import PASSWORD
from tests.integration.e2ee.helpers import cross_signing_key, new_key, public, sign

V3 = "/_matrix/client/v3"


async def sync(client) -> SyncResponse:
    resp = await client.sync(timeout=0)
    assert isinstance(resp, SyncResponse), resp
    return resp


async def keys_changes(server, client, since: str, to: str) -> dict:
    status, body = await server.request(
        "GET", f"{V3}/keys/changes?from={since}&to={to}", token=client.access_token
    )
    assert status == 200, body
    return body


async def test_keys_changes_reports_joins_and_leaves_as_sync_does(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    room = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(room, RoomCreateResponse)
    other_room = await alice.room_create(invite=[carol.user_id])
    assert isinstance(other_room, RoomCreateResponse)
    assert isinstance(await carol.join(other_room.room_id), JoinResponse)
    start = (await sync(alice)).next_batch

    # A new user in a room of ours: their keys are news.
    assert isinstance(await bob.join(room.room_id), JoinResponse)
    resp = await sync(alice)
    assert bob.user_id in resp.device_list.changed
    body = await keys_changes(server, alice, start, resp.next_batch)
    assert bob.user_id in body["changed"] and body["left"] == []

    # They leave: no room shared any more.
    joined = resp.next_batch
    assert isinstance(await bob.room_leave(room.room_id), RoomLeaveResponse)
    resp = await sync(alice)
    assert bob.user_id in resp.device_list.left
    body = await keys_changes(server, alice, joined, resp.next_batch)
    assert body["left"] == [bob.user_id] and bob.user_id not in body["changed"]

    # We leave the room we shared with carol: she is in `left` for us.
    before = resp.next_batch
    assert isinstance(await alice.room_leave(other_room.room_id), RoomLeaveResponse)
    resp = await sync(alice)
    assert carol.user_id in resp.device_list.left
    body = await keys_changes(server, alice, before, resp.next_batch)
    assert carol.user_id in body["left"]

    # We join a room: everyone in it is news to us.
    dave = await server.client("dave")
    dave_room = await dave.room_create(invite=[alice.user_id])
    assert isinstance(dave_room, RoomCreateResponse)
    before = (await sync(alice)).next_batch
    assert isinstance(await alice.join(dave_room.room_id), JoinResponse)
    resp = await sync(alice)
    assert dave.user_id in resp.device_list.changed
    body = await keys_changes(server, alice, before, resp.next_batch)
    assert dave.user_id in body["changed"]


async def upload_signing_keys(server, client, keys: dict) -> None:
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": client.user_id},
        "password": PASSWORD,
    }
    status, body = await server.request(
        "POST",
        f"{V3}/keys/device_signing/upload",
        token=client.access_token,
        json={**keys, "auth": auth},
    )
    assert status == 200, body


async def test_user_signing_key_and_signatures_of_others_are_private(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await alice.room_create(invite=[bob.user_id])
    assert isinstance(room, RoomCreateResponse)
    assert isinstance(await bob.join(room.room_id), JoinResponse)
    await sync(alice)
    await sync(bob)
    bob_master = new_key("bm")
    await upload_signing_keys(
        server, bob, {"master_key": cross_signing_key(bob.user_id, "master", bob_master)}
    )
    alice_master = new_key("am")
    await upload_signing_keys(
        server, alice, {"master_key": cross_signing_key(alice.user_id, "master", alice_master)}
    )
    await sync(alice)
    resp = await sync(bob)
    assert alice.user_id in resp.device_list.changed  # a master key is everyone's news

    # Alice's user-signing key: only she hears of it.
    user_signing = new_key("us")
    await upload_signing_keys(
        server,
        alice,
        {
            "user_signing_key": cross_signing_key(
                alice.user_id, "user_signing", user_signing, alice_master
            )
        },
    )
    assert alice.user_id in (await sync(alice)).device_list.changed
    assert alice.user_id not in (await sync(bob)).device_list.changed

    # Alice signs Bob's master key: news to her (about Bob), not to Bob.
    signed = sign(
        cross_signing_key(bob.user_id, "master", bob_master),
        alice.user_id,
        user_signing,
        public(user_signing),
    )
    status, body = await server.request(
        "POST",
        f"{V3}/keys/signatures/upload",
        token=alice.access_token,
        json={bob.user_id: {public(bob_master): signed}},
    )
    assert status == 200 and body["failures"] == {}, body
    assert bob.user_id in (await sync(alice)).device_list.changed
    resp = await sync(bob)
    assert alice.user_id not in resp.device_list.changed
    assert bob.user_id not in resp.device_list.changed


async def test_keys_changes_after_leaving_and_rejoining_a_room(server):
    """Out of a room and back in between the tokens: its members are news again (their
    keys may have changed while we could not hear of it)."""
    alice = await server.client("alice")
    dave = await server.client("dave")
    room = await dave.room_create(preset=RoomPreset.public_chat)
    assert isinstance(room, RoomCreateResponse)
    assert isinstance(await alice.join(room.room_id), JoinResponse)
    await sync(alice)
    before = (await sync(alice)).next_batch
    assert isinstance(await alice.room_leave(room.room_id), RoomLeaveResponse)
    assert isinstance(await alice.join(room.room_id), JoinResponse)
    resp = await sync(alice)
    assert dave.user_id in resp.device_list.changed
    body = await keys_changes(server, alice, before, resp.next_batch)
    assert dave.user_id in body["changed"] and body["left"] == []


async def test_sync_leaves_out_empty_device_lists(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(room, RoomCreateResponse)
    first = await sync(alice)
    path = f"{V3}/sync?timeout=0&since={first.next_batch}"
    await alice.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    status, body = await server.request("GET", path, token=alice.access_token)
    assert status == 200 and "device_lists" not in body
    assert isinstance(await bob.join(room.room_id), JoinResponse)
    status, body = await server.request("GET", path, token=alice.access_token)
    assert status == 200 and body["device_lists"] == {"changed": [bob.user_id]}
