"""End-to-end encryption across two servers: remote key query and claim with matrix-nio,
the remote device-list cache kept current by m.device_list_update (applied in sequence,
resynced through /user/devices on a gap) and m.signing_key_update, and the user/devices
and user/keys endpoints themselves."""

from __future__ import annotations

import pytest
from nio import Api, KeysClaimResponse, KeysQueryResponse, SyncResponse

from tests.integration.e2ee.helpers import cross_signing_key, device_keys, new_key
from tests.integration.e2ee.test_e2ee_chat import e2e_client, e2e_login
from tests.integration.federation.helpers import (
    eventually,
    new_txn_id,
    remote_member,
    signed_request,
    start_federation_listener,
    stop_federation_listener,
    transaction,
)
from tests.schema import assert_matches_schema


async def query_keys(client, user_id: str) -> KeysQueryResponse:
    method, path, data = Api.keys_query(client.access_token, {user_id})
    resp = await client._send(KeysQueryResponse, method, path, data)
    assert isinstance(resp, KeysQueryResponse), resp
    return resp


async def claim_key(client, user_id: str, device_id: str) -> KeysClaimResponse:
    method, path, data = Api.keys_claim(client.access_token, {user_id: [device_id]})
    resp = await client._send(KeysClaimResponse, method, path, data)
    assert isinstance(resp, KeysClaimResponse), resp
    return resp


async def cached_list(server, user_id: str):
    return await server.db.fetchrow(
        "SELECT stream_id FROM federation_remote_device_lists WHERE user_id = $1", user_id
    )


async def cached_devices(server, user_id: str) -> set[str]:
    rows = await server.db.fetch(
        "SELECT device_id FROM federation_remote_devices WHERE user_id = $1", user_id
    )
    return {r["device_id"] for r in rows}


async def otk_count(server, user_id: str, device_id: str) -> int:
    return await server.db.fetchval(
        "SELECT count(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2",
        user_id,
        device_id,
    )


async def test_remote_key_query_and_claim(pair, tmp_path):
    hs1, hs2 = pair
    bob = await e2e_client(hs2, tmp_path, "bob")
    alice = await e2e_client(hs1, tmp_path, "alice")

    resp = await query_keys(alice, bob.user_id)
    assert resp.failures == {}
    keys = resp.device_keys[bob.user_id][bob.device_id]
    assert keys["keys"][f"ed25519:{bob.device_id}"] == bob.olm.account.identity_keys["ed25519"]

    before = await otk_count(hs2, bob.user_id, bob.device_id)
    claimed = await claim_key(alice, bob.user_id, bob.device_id)
    assert claimed.failures == {}
    [(key_id, key)] = claimed.one_time_keys[bob.user_id][bob.device_id].items()
    assert key_id.startswith("signed_curve25519:") and "signatures" in key
    assert await otk_count(hs2, bob.user_id, bob.device_id) == before - 1
    # Bob shares no room with anyone here: his list is not cached (nothing would keep it
    # current).
    assert await cached_list(hs1, bob.user_id) is None


async def test_device_lists_of_remote_users_are_cached_and_kept_current(pair, tmp_path, ca):
    hs1, hs2 = pair
    bob = await e2e_client(hs2, tmp_path, "bob")
    alice = await e2e_client(hs1, tmp_path, "alice")
    room = await alice.room_create()
    for server in (hs1, hs2):
        await remote_member(server, room.room_id, alice.user_id)
        await remote_member(server, room.room_id, bob.user_id)

    # The first query goes to hs2 and starts caching bob's list (a resync).
    await query_keys(alice, bob.user_id)
    await eventually(lambda: cached_list(hs1, bob.user_id))
    assert await cached_devices(hs1, bob.user_id) == {bob.device_id}
    await alice.sync(timeout=0)

    # Bob signs in on a second device: hs2 sends the update, hs1 applies it in sequence,
    # and alice's next sync says bob's devices changed.
    bob2 = await e2e_login(hs2, tmp_path, "bob")

    async def both_cached():
        return await cached_devices(hs1, bob.user_id) == {bob.device_id, bob2.device_id}

    await eventually(both_cached)
    resp = await alice.sync(timeout=0)
    assert isinstance(resp, SyncResponse)
    assert bob.user_id in resp.device_list.changed

    # Answered from the cache: with hs2 unreachable the query still has both devices.
    await stop_federation_listener(hs2)
    resp = await query_keys(alice, bob.user_id)
    assert resp.failures == {}
    assert set(resp.device_keys[bob.user_id]) == {bob.device_id, bob2.device_id}
    await start_federation_listener(hs2)

    # Cross-signing keys: m.signing_key_update.
    master_key, ssk_key = new_key("m"), new_key("s")
    master = cross_signing_key(bob.user_id, "master", master_key)
    self_signing = cross_signing_key(bob.user_id, "self_signing", ssk_key, signer=master_key)
    status, body = await hs2.request(
        "POST",
        "/_matrix/client/v3/keys/device_signing/upload",
        token=bob.access_token,
        json={"master_key": master, "self_signing_key": self_signing},
    )
    assert status == 200, body

    async def master_cached():
        raw = await hs1.db.fetchval(
            "SELECT master_key FROM federation_remote_device_lists WHERE user_id = $1",
            bob.user_id,
        )
        return raw is not None

    await eventually(master_cached)
    status, body = await hs1.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=alice.access_token,
        json={"device_keys": {bob.user_id: []}},
    )
    assert status == 200, body
    assert body["master_keys"][bob.user_id]["keys"] == master["keys"]
    assert body["self_signing_keys"][bob.user_id]["keys"] == self_signing["keys"]

    # An update in sequence (prev_id known) is applied as it is: the device only exists
    # in what hs2 told us, so a query showing it is answered from the cache.
    stream_id = (await cached_list(hs1, bob.user_id))["stream_id"]
    extra, _ = device_keys(bob.user_id, "EXTRA")
    update = {
        "user_id": bob.user_id,
        "device_id": "EXTRA",
        "stream_id": stream_id + 1,
        "prev_id": [stream_id],
        "keys": extra,
    }
    edu = {"edu_type": "m.device_list_update", "content": update}
    send = "/_matrix/federation/v1/send/"
    status, _ = await signed_request(
        hs2, hs1, ca, "PUT", send + new_txn_id(), transaction(hs2.server_name, edus=[edu])
    )
    assert status == 200
    resp = await query_keys(alice, bob.user_id)
    assert "EXTRA" in resp.device_keys[bob.user_id]

    # A gap (a prev_id never seen): hs1 fetches the whole list again from /user/devices,
    # which knows nothing of EXTRA or GHOST.
    ghost, _ = device_keys(bob.user_id, "GHOST")
    gap = {**update, "device_id": "GHOST", "keys": ghost, "stream_id": 1000, "prev_id": [999]}
    edu = {"edu_type": "m.device_list_update", "content": gap}
    status, _ = await signed_request(
        hs2, hs1, ca, "PUT", send + new_txn_id(), transaction(hs2.server_name, edus=[edu])
    )
    assert status == 200
    real_stream_id = await hs2.db.fetchval(
        "SELECT stream_id FROM federation_device_list_streams WHERE user_id = $1", bob.user_id
    )

    async def resynced():
        row = await cached_list(hs1, bob.user_id)
        return row is not None and row["stream_id"] == real_stream_id

    await eventually(resynced)
    assert await cached_devices(hs1, bob.user_id) == {bob.device_id, bob2.device_id}


async def test_user_devices_and_keys_endpoints(pair, tmp_path):
    hs1, hs2 = pair
    bob = await e2e_client(hs2, tmp_path, "bob")
    client = hs1.hs.federation.client
    devices = await client.get_json(
        hs2.server_name, f"/_matrix/federation/v1/user/devices/{bob.user_id.replace('@', '%40')}"
    )
    assert_matches_schema(
        "server-server/user_devices.yaml", "/user/devices/{userId}", "get", 200, devices
    )
    assert devices["user_id"] == bob.user_id
    assert [d["device_id"] for d in devices["devices"]] == [bob.device_id]

    stranger = f"@carol:{hs1.server_name}"
    answer = await client.post_json(
        hs2.server_name,
        "/_matrix/federation/v1/user/keys/query",
        {"device_keys": {bob.user_id: [], stranger: []}},
    )
    assert_matches_schema("server-server/user_keys.yaml", "/user/keys/query", "post", 200, answer)
    # Only hs2's own users are answered for.
    assert set(answer["device_keys"]) == {bob.user_id}
    assert "user_signing_keys" not in answer

    claimed = await client.post_json(
        hs2.server_name,
        "/_matrix/federation/v1/user/keys/claim",
        {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}},
    )
    assert_matches_schema("server-server/user_keys.yaml", "/user/keys/claim", "post", 200, claimed)
    assert bob.device_id in claimed["one_time_keys"][bob.user_id]

    from federation.client import FederationError

    bad = [
        ("GET", f"/_matrix/federation/v1/user/devices/{stranger.replace('@', '%40')}", None),
        ("POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": []}),
        ("POST", "/_matrix/federation/v1/user/keys/claim", {"one_time_keys": {"x": 1}}),
        ("POST", "/_matrix/federation/v1/user/keys/query", None),
    ]
    for method, path, body in bad:
        with pytest.raises(FederationError) as err:
            await client.request(method, hs2.server_name, path, content=body)
        assert err.value.status == 400, (path, err.value.body)
        assert err.value.errcode in ("M_INVALID_PARAM", "M_BAD_JSON", "M_NOT_JSON")


async def test_the_cache_is_dropped_when_no_room_is_shared_any_more(pair, tmp_path):
    hs1, hs2 = pair
    bob = await e2e_client(hs2, tmp_path, "bob")
    alice = await e2e_client(hs1, tmp_path, "alice")
    room = await alice.room_create()
    await remote_member(hs1, room.room_id, bob.user_id)
    await query_keys(alice, bob.user_id)
    await eventually(lambda: cached_list(hs1, bob.user_id))
    # Alice leaves the only room she shared with bob: updates about him would stop
    # coming, so what we hold of his devices can no longer be trusted.
    assert (await alice.room_leave(room.room_id)).__class__.__name__ == "RoomLeaveResponse"

    async def forgotten():
        return await cached_list(hs1, bob.user_id) is None

    await eventually(forgotten)
    assert await cached_devices(hs1, bob.user_id) == set()


async def test_a_user_sharing_a_room_is_cached_before_the_first_query_is_answered(
    pair, tmp_path, ca
):
    """SyTest 40devicelists "resyncs when client query keys and there is no remote
    cache": the list comes from /user/devices (and is cached) before the answer, and
    devices whose keys have an odd shape are listed (their keys are the clients' to
    judge) unless they claim another device."""
    hs1, hs2 = pair
    bob = await e2e_client(hs2, tmp_path, "bob")
    alice = await e2e_client(hs1, tmp_path, "alice")
    room = await alice.room_create()
    for server in (hs1, hs2):
        await remote_member(server, room.room_id, alice.user_id)
        await remote_member(server, room.room_id, bob.user_id)
    resp = await query_keys(alice, bob.user_id)
    assert set(resp.device_keys[bob.user_id]) == {bob.device_id}
    assert await cached_devices(hs1, bob.user_id) == {bob.device_id}

    stream_id = (await cached_list(hs1, bob.user_id))["stream_id"]
    send = "/_matrix/federation/v1/send/"
    for n, (device_id, keys) in enumerate(
        [("ODD", {"device_keys": {}}), ("LIAR", {"user_id": bob.user_id, "device_id": "X"})]
    ):
        update = {
            "user_id": bob.user_id,
            "device_id": device_id,
            "stream_id": stream_id + n + 1,
            "prev_id": [stream_id + n],
            "keys": keys,
        }
        edu = {"edu_type": "m.device_list_update", "content": update}
        status, _ = await signed_request(
            hs2, hs1, ca, "PUT", send + new_txn_id(), transaction(hs2.server_name, edus=[edu])
        )
        assert status == 200
    assert await cached_devices(hs1, bob.user_id) == {bob.device_id, "ODD"}


async def test_an_update_for_a_user_not_cached_yet_starts_a_resync(pair, tmp_path, ca):
    """SyTest 40devicelists "Server correctly handles incoming m.device_list_update": the
    first update about a user sharing a room fetches their whole list (as Synapse)."""
    hs1, hs2 = pair
    bob = await e2e_client(hs2, tmp_path, "bob")
    alice = await e2e_client(hs1, tmp_path, "alice")
    room = await alice.room_create()
    for server in (hs1, hs2):
        await remote_member(server, room.room_id, alice.user_id)
        await remote_member(server, room.room_id, bob.user_id)
    assert await cached_list(hs1, bob.user_id) is None
    update = {"user_id": bob.user_id, "device_id": bob.device_id, "stream_id": 1, "prev_id": []}
    edu = {"edu_type": "m.device_list_update", "content": update}
    status, _ = await signed_request(
        hs2,
        hs1,
        ca,
        "PUT",
        "/_matrix/federation/v1/send/" + new_txn_id(),
        transaction(hs2.server_name, edus=[edu]),
    )
    assert status == 200
    await eventually(lambda: cached_list(hs1, bob.user_id))
    assert await cached_devices(hs1, bob.user_id) == {bob.device_id}
