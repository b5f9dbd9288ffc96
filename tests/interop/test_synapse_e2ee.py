"""End-to-end encryption plumbing across our server and Synapse: a user on one side queries
the device keys of a user on the other (client /keys/query -> federation user/keys/query),
and to-device messages go both ways."""

from __future__ import annotations

import uuid

import pytest
from nio import AsyncClient, RoomMessageText, SyncResponse, ToDeviceMessage, ToDeviceResponse
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from tests.harness import PASSWORD
from tests.integration.e2ee.helpers import cross_signing_key, new_key
from tests.interop.helpers import MAX_SYNCS


async def _uploaded(client: AsyncClient) -> AsyncClient:
    resp = await client.sync(timeout=0, full_state=True)
    assert isinstance(resp, SyncResponse), resp
    assert client.should_upload_keys
    await client.keys_upload()
    return client


def _store(tmp_path, name: str) -> str:
    path = tmp_path / f"store-{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return str(path)


def _check_device(answer: dict, client: AsyncClient) -> None:
    """The queried device is the client's, with its own identity keys, self-signed."""
    device = answer["device_keys"][client.user_id][client.device_id]
    identity = client.olm.account.identity_keys
    key_id = f"ed25519:{client.device_id}"
    assert device["keys"][key_id] == identity["ed25519"]
    assert device["keys"][f"curve25519:{client.device_id}"] == identity["curve25519"]
    verify_key = decode_verify_key_bytes(key_id, decode_base64(identity["ed25519"]))
    verify_signed_json(device, client.user_id, verify_key)


async def test_synapse_user_queries_our_users_keys(ours, synapse_peer, tmp_path):
    alice = await ours.client(
        f"alice{uuid.uuid4().hex[:6]}", encryption=True, store_path=_store(tmp_path, "a")
    )
    await _uploaded(alice)
    bob = await synapse_peer.client()
    try:
        http = await synapse_peer.http()
        async with http.post(
            f"{synapse_peer.client_url}/_matrix/client/v3/keys/query",
            json={"device_keys": {alice.user_id: []}},
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
    finally:
        await bob.close()
    assert answer["failures"] == {}, answer
    _check_device(answer, alice)


async def test_we_query_a_synapse_users_keys(ours, synapse_peer, tmp_path):
    bob = await synapse_peer.client(store_path=_store(tmp_path, "b"))
    try:
        await _uploaded(bob)
        alice = await ours.client(f"alice{uuid.uuid4().hex[:6]}")
        status, answer = await ours.request(
            "POST",
            "/_matrix/client/v3/keys/query",
            token=alice.access_token,
            json={"device_keys": {bob.user_id: []}},
        )
        assert status == 200, answer
        assert answer["failures"] == {}, answer
        _check_device(answer, bob)
    finally:
        await bob.close()


async def _wait_for_to_device(client: AsyncClient, event_type: str) -> list[dict]:
    """Syncs until a to-device event of `event_type` arrives (bounded); their sources."""
    for _ in range(MAX_SYNCS):
        resp = await client.sync(timeout=3_000, since=client.next_batch)
        assert isinstance(resp, SyncResponse), resp
        got = [e.source for e in resp.to_device_events if e.source.get("type") == event_type]
        if got:
            return got
    raise AssertionError(f"{client.user_id} never got a {event_type} to-device event")


async def test_to_device_messages_both_ways(ours, synapse_peer):
    """To-device messages travel as m.direct_to_device EDUs in transactions each way."""
    alice = await ours.client(f"alice{uuid.uuid4().hex[:6]}")
    bob = await synapse_peer.client()
    try:
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)
        sent = await bob.to_device(
            ToDeviceMessage("org.example.ping", alice.user_id, alice.device_id, {"n": 1})
        )
        assert isinstance(sent, ToDeviceResponse), sent
        [got] = await _wait_for_to_device(alice, "org.example.ping")
        assert (got["sender"], got["content"]) == (bob.user_id, {"n": 1})

        sent = await alice.to_device(
            ToDeviceMessage("org.example.pong", bob.user_id, bob.device_id, {"n": 2})
        )
        assert isinstance(sent, ToDeviceResponse), sent
        [got] = await _wait_for_to_device(bob, "org.example.pong")
        assert (got["sender"], got["content"]) == (alice.user_id, {"n": 2})
    finally:
        await bob.close()


async def _claim(post, user: AsyncClient) -> dict:
    status, answer = await post(
        "/_matrix/client/v3/keys/claim",
        {"one_time_keys": {user.user_id: {user.device_id: "signed_curve25519"}}},
    )
    assert status == 200, answer
    assert answer["failures"] == {}, answer
    [(key_id, key)] = answer["one_time_keys"][user.user_id][user.device_id].items()
    assert key_id.startswith("signed_curve25519:")
    # Signed by the device that uploaded it, and one of the keys it uploaded.
    identity = user.olm.account.identity_keys
    verify_key = decode_verify_key_bytes(
        f"ed25519:{user.device_id}", decode_base64(identity["ed25519"])
    )
    verify_signed_json(key, user.user_id, verify_key)
    return key


async def test_one_time_keys_claimed_both_ways(ours, synapse_peer, tmp_path):
    alice = await ours.client(
        f"alice{uuid.uuid4().hex[:6]}", encryption=True, store_path=_store(tmp_path, "a")
    )
    await _uploaded(alice)
    bob = await synapse_peer.client(store_path=_store(tmp_path, "b"))
    http = await synapse_peer.http()

    async def via_synapse(path: str, body: dict) -> tuple[int, dict]:
        async with http.post(
            synapse_peer.client_url + path,
            json=body,
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            return resp.status, await resp.json()

    async def via_ours(path: str, body: dict) -> tuple[int, dict]:
        return await ours.request("POST", path, token=alice.access_token, json=body)

    try:
        await _uploaded(bob)
        first = await _claim(via_synapse, alice)
        second = await _claim(via_synapse, alice)
        assert first["key"] != second["key"]  # a one-time key is handed out once
        await _claim(via_ours, bob)
    finally:
        await bob.close()


ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def _settle(client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
    """One sync and the key traffic a real client does after it."""
    resp = await client.sync(timeout=timeout_ms, full_state=client.next_batch is None)
    assert isinstance(resp, SyncResponse), resp
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    return resp


async def _until(client: AsyncClient, done) -> SyncResponse:
    """Settles until `done(sync response)` holds; bounded."""
    for _ in range(MAX_SYNCS):
        resp = await _settle(client, 3_000)
        if done(resp):
            return resp
    raise AssertionError(f"{client.user_id}: condition never met")


async def _send_encrypted(client: AsyncClient, room_id: str, text: str) -> None:
    await _settle(client)
    resp = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": text},
        ignore_unverified_devices=True,
    )
    assert getattr(resp, "event_id", None), resp


async def _wait_decrypted(client: AsyncClient, room_id: str, text: str) -> None:
    """Syncs until `text` arrives decrypted in `room_id` (bounded); an event that stays
    undecryptable fails the test with what was received instead."""
    seen: list = []
    for _ in range(MAX_SYNCS):
        resp = await _settle(client, 3_000)
        room = resp.rooms.join.get(room_id)
        if room is not None:
            seen += room.timeline.events
        if any(isinstance(e, RoomMessageText) and e.body == text for e in seen):
            return
    raise AssertionError(f"{client.user_id} never decrypted {text!r}; got {seen}")


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
async def test_encrypted_conversation_across_our_server_and_synapse(
    ours, synapse_peer, tmp_path, created_on
):
    """Olm and Megolm between a matrix-nio user on each side: device lists, key query and
    claim, room keys by to-device, encrypted timeline events, all over federation."""
    alice = await ours.client(
        f"alice{uuid.uuid4().hex[:6]}", encryption=True, store_path=_store(tmp_path, "a")
    )
    bob = await synapse_peer.client(store_path=_store(tmp_path, "b"))
    host, guest = (alice, bob) if created_on == "ours" else (bob, alice)
    try:
        await _settle(alice)
        await _settle(bob)
        created = await host.room_create(invite=[guest.user_id], initial_state=[ENCRYPTION])
        room_id = created.room_id
        await _until(guest, lambda r: room_id in r.rooms.invite)
        joined = await guest.join(room_id)
        assert getattr(joined, "room_id", None) == room_id, joined
        await _until(host, lambda r: guest.user_id in host.rooms[room_id].users)

        secret = f"from the host {uuid.uuid4().hex}"
        await _send_encrypted(host, room_id, secret)
        await _wait_decrypted(guest, room_id, secret)
        stored = await ours.db.fetchval(
            "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.encrypted'",
            room_id,
        )
        assert stored == 1
        assert (
            await ours.db.fetchval(
                "SELECT count(*) FROM events WHERE room_id = $1 AND json LIKE $2",
                room_id,
                f"%{secret}%",
            )
            == 0
        )  # only ciphertext reaches our database

        reply = f"from the guest {uuid.uuid4().hex}"
        await _send_encrypted(guest, room_id, reply)
        await _wait_decrypted(host, room_id, reply)
    finally:
        await bob.close()


async def _devices_seen(post, user_id: str) -> set[str]:
    status, answer = await post("/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}})
    assert status == 200, answer
    return set(answer["device_keys"].get(user_id, {}))


async def _until_devices(client: AsyncClient, post, user_id: str, wanted: set[str]) -> None:
    """Queries `user_id`'s devices after each sync until they are `wanted` (bounded): the
    other server stores an update a moment after it tells its clients of it."""
    for _ in range(MAX_SYNCS):
        if await _devices_seen(post, user_id) == wanted:
            return
        await client.sync(timeout=1_000, since=client.next_batch)
    assert await _devices_seen(post, user_id) == wanted


async def test_device_list_updates_cross_both_ways(ours, synapse_peer, tmp_path):
    """A new device on one side is announced to the other (m.device_list_update), whose
    users see the user in device_lists.changed and then find the device by query."""
    alice = await ours.client(
        f"alice{uuid.uuid4().hex[:6]}", encryption=True, store_path=_store(tmp_path, "a")
    )
    bob = await synapse_peer.client(store_path=_store(tmp_path, "b"))
    extra: list[AsyncClient] = []
    http = await synapse_peer.http()

    async def via_synapse(path: str, body: dict) -> tuple[int, dict]:
        async with http.post(
            synapse_peer.client_url + path,
            json=body,
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            return resp.status, await resp.json()

    async def via_ours(path: str, body: dict) -> tuple[int, dict]:
        return await ours.request("POST", path, token=alice.access_token, json=body)

    try:
        await _settle(alice)
        await _settle(bob)
        created = await alice.room_create(invite=[bob.user_id])
        await _until(bob, lambda r: created.room_id in r.rooms.invite)
        assert getattr(await bob.join(created.room_id), "room_id", None) == created.room_id
        await _until(alice, lambda r: bob.user_id in alice.rooms[created.room_id].users)
        assert await _devices_seen(via_ours, bob.user_id) == {bob.device_id}
        assert await _devices_seen(via_synapse, alice.user_id) == {alice.device_id}
        await _settle(alice)  # past the "changed" that sharing a room brings
        await _settle(bob)

        bob2 = await synapse_peer.login(bob.user_id, store_path=_store(tmp_path, "b2"))
        extra.append(bob2)
        await _settle(bob2)
        await _until(alice, lambda r: bob.user_id in r.device_list.changed)
        await _until_devices(alice, via_ours, bob.user_id, {bob.device_id, bob2.device_id})

        localpart = alice.user_id[1:].split(":", 1)[0]
        alice2 = await ours.login(localpart, encryption=True, store_path=_store(tmp_path, "a2"))
        await _settle(alice2)
        await _until(bob, lambda r: alice.user_id in r.device_list.changed)
        await _until_devices(bob, via_synapse, alice.user_id, {alice.device_id, alice2.device_id})
    finally:
        for client in (bob, *extra):
            await client.close()


async def test_cross_signing_keys_queried_both_ways(ours, synapse_peer):
    """Master and self-signing keys uploaded on one side are what the other side's users
    get from /keys/query (federation user/keys/query); user-signing keys stay private."""
    alice = await ours.client(f"alice{uuid.uuid4().hex[:6]}")
    bob = await synapse_peer.client()
    http = await synapse_peer.http()

    async def via_synapse(path: str, body: dict) -> tuple[int, dict]:
        async with http.post(
            synapse_peer.client_url + path,
            json=body,
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            return resp.status, await resp.json()

    async def via_ours(path: str, body: dict) -> tuple[int, dict]:
        return await ours.request("POST", path, token=alice.access_token, json=body)

    try:
        uploaded = {}
        for user, post in ((alice, via_ours), (bob, via_synapse)):
            master = new_key("m")
            keys = {
                "master_key": cross_signing_key(user.user_id, "master", master),
                "self_signing_key": cross_signing_key(
                    user.user_id, "self_signing", new_key("s"), master
                ),
                "user_signing_key": cross_signing_key(
                    user.user_id, "user_signing", new_key("u"), master
                ),
            }
            status, body = await post("/_matrix/client/v3/keys/device_signing/upload", keys)
            assert status == 200, body
            uploaded[user.user_id] = keys

        for asker, post, owner in ((bob, via_synapse, alice), (alice, via_ours, bob)):
            status, answer = await post(
                "/_matrix/client/v3/keys/query", {"device_keys": {owner.user_id: []}}
            )
            assert status == 200 and answer["failures"] == {}, answer
            mine = uploaded[owner.user_id]
            for kind in ("master_key", "self_signing_key"):
                got = answer[f"{kind}s"][owner.user_id]
                assert got["keys"] == mine[kind]["keys"], (asker.user_id, kind, got)
                assert got["usage"] == mine[kind]["usage"]
            assert owner.user_id not in answer.get("user_signing_keys", {})
    finally:
        await bob.close()


async def test_cross_signing_updates_reach_users_who_share_a_room(ours, synapse_peer, tmp_path):
    """Keys uploaded after the users share a room are announced (m.signing_key_update or
    a device-list update) and then served from the other side's knowledge of them."""
    alice = await ours.client(
        f"alice{uuid.uuid4().hex[:6]}", encryption=True, store_path=_store(tmp_path, "a")
    )
    bob = await synapse_peer.client(store_path=_store(tmp_path, "b"))
    http = await synapse_peer.http()

    async def via_synapse(path: str, body: dict) -> tuple[int, dict]:
        async with http.post(
            synapse_peer.client_url + path,
            json=body,
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            return resp.status, await resp.json()

    async def via_ours(path: str, body: dict) -> tuple[int, dict]:
        return await ours.request("POST", path, token=alice.access_token, json=body)

    try:
        await _settle(alice)
        await _settle(bob)
        created = await alice.room_create(invite=[bob.user_id])
        await _until(bob, lambda r: created.room_id in r.rooms.invite)
        assert getattr(await bob.join(created.room_id), "room_id", None) == created.room_id
        await _until(alice, lambda r: bob.user_id in alice.rooms[created.room_id].users)
        # Both sides now know (and cache) each other's devices.
        assert await _devices_seen(via_ours, bob.user_id) == {bob.device_id}
        assert await _devices_seen(via_synapse, alice.user_id) == {alice.device_id}
        await _settle(alice)
        await _settle(bob)

        for owner, post, watcher, watcher_post in (
            (bob, via_synapse, alice, via_ours),
            (alice, via_ours, bob, via_synapse),
        ):
            master = new_key("m")
            keys = {
                "master_key": cross_signing_key(owner.user_id, "master", master),
                "self_signing_key": cross_signing_key(
                    owner.user_id, "self_signing", new_key("s"), master
                ),
            }
            status, body = await post("/_matrix/client/v3/keys/device_signing/upload", keys)
            assert status == 200, body
            await _until(watcher, lambda r, owner=owner: owner.user_id in r.device_list.changed)
            for _ in range(MAX_SYNCS):
                status, answer = await watcher_post(
                    "/_matrix/client/v3/keys/query", {"device_keys": {owner.user_id: []}}
                )
                got = answer.get("master_keys", {}).get(owner.user_id)
                if got is not None:
                    break
                await watcher.sync(timeout=1_000, since=watcher.next_batch)
            assert got is not None and got["keys"] == keys["master_key"]["keys"], answer
    finally:
        await bob.close()


async def test_to_device_to_every_device_of_a_remote_user(ours, synapse_peer):
    """A to-device message for device "*" reaches each device the user has on the other
    server (which expands the wildcard)."""
    alice = await ours.client(f"alice{uuid.uuid4().hex[:6]}")
    alice2 = await ours.login(alice.user_id[1:].split(":", 1)[0])
    bob = await synapse_peer.client()
    bob2 = await synapse_peer.login(bob.user_id)
    try:
        for client in (alice, alice2, bob, bob2):
            await client.sync(timeout=0)
        for sender, user, devices in ((bob, alice, (alice, alice2)), (alice, bob, (bob, bob2))):
            message = ToDeviceMessage("org.example.all", user.user_id, "*", {"to": "all"})
            assert isinstance(await sender.to_device(message), ToDeviceResponse)
            for device in devices:
                [got] = await _wait_for_to_device(device, "org.example.all")
                assert (got["sender"], got["content"]) == (sender.user_id, {"to": "all"})
    finally:
        for client in (bob, bob2):
            await client.close()


async def _delete_device(post, user: AsyncClient, device_id: str) -> None:
    """POST /delete_devices through user-interactive auth with the password."""
    status, body = await post("/_matrix/client/v3/delete_devices", {"devices": [device_id]})
    assert status == 401 and "session" in body, body
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": PASSWORD,
        "session": body["session"],
    }
    status, body = await post(
        "/_matrix/client/v3/delete_devices", {"devices": [device_id], "auth": auth}
    )
    assert status == 200, body


async def test_deleted_devices_disappear_on_the_other_side(ours, synapse_peer, tmp_path):
    alice = await ours.client(
        f"alice{uuid.uuid4().hex[:6]}", encryption=True, store_path=_store(tmp_path, "a")
    )
    alice2 = await ours.login(
        alice.user_id[1:].split(":", 1)[0], encryption=True, store_path=_store(tmp_path, "a2")
    )
    bob = await synapse_peer.client(store_path=_store(tmp_path, "b"))
    bob2 = await synapse_peer.login(bob.user_id, store_path=_store(tmp_path, "b2"))
    http = await synapse_peer.http()

    async def via_synapse(path: str, body: dict) -> tuple[int, dict]:
        async with http.post(
            synapse_peer.client_url + path,
            json=body,
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            return resp.status, await resp.json()

    async def via_ours(path: str, body: dict) -> tuple[int, dict]:
        return await ours.request("POST", path, token=alice.access_token, json=body)

    try:
        for client in (alice, alice2, bob, bob2):
            await _settle(client)
        created = await alice.room_create(invite=[bob.user_id])
        await _until(bob, lambda r: created.room_id in r.rooms.invite)
        assert getattr(await bob.join(created.room_id), "room_id", None) == created.room_id
        await _until(alice, lambda r: bob.user_id in alice.rooms[created.room_id].users)
        await _until_devices(alice, via_ours, bob.user_id, {bob.device_id, bob2.device_id})
        await _until_devices(bob, via_synapse, alice.user_id, {alice.device_id, alice2.device_id})

        await _delete_device(via_synapse, bob, bob2.device_id)
        await _until_devices(alice, via_ours, bob.user_id, {bob.device_id})
        await _delete_device(via_ours, alice, alice2.device_id)
        await _until_devices(bob, via_synapse, alice.user_id, {alice.device_id})
    finally:
        for client in (bob, bob2):
            await client.close()
