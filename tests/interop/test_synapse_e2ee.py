"""End-to-end encryption keys across our server and Synapse: a user on one side queries the
device keys of a user on the other (client /keys/query -> federation user/keys/query)."""

from __future__ import annotations

import uuid

from nio import AsyncClient, SyncResponse
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64


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
