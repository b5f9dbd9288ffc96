"""/keys/upload, /keys/query and /keys/claim on the wire: what is stored and what is refused."""

from __future__ import annotations

import asyncio

from nio import KeysQueryResponse

from tests.integration.e2ee.helpers import device_keys, signed_otks


async def _raw_user(server, localpart: str):
    client = await server.client(localpart)
    return client.access_token, client.user_id, client.device_id


async def _count(server, table: str) -> int:
    return await server.db.fetchval(f"SELECT count(*) FROM {table}")


async def test_nio_uploads_keys_and_others_see_them(server, tmp_path):
    alice = await server.client("alice", encryption=True, store_path=str(tmp_path))
    assert alice.should_upload_keys
    resp = await alice.keys_upload()
    assert resp.signed_curve25519_count > 0
    bob = await server.client("bob")
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=bob.access_token,
        json={"device_keys": {alice.user_id: []}},
    )
    assert status == 200, body
    keys = body["device_keys"][alice.user_id][alice.device_id]
    assert keys["keys"][f"ed25519:{alice.device_id}"] == alice.olm.account.identity_keys["ed25519"]
    assert body["failures"] == {}


async def test_nio_keys_query_response_parses(server, tmp_path):
    alice = await server.client("alice", encryption=True, store_path=str(tmp_path))
    await alice.keys_upload()
    alice.olm.users_for_key_query.add(alice.user_id)
    resp = await alice.keys_query()
    assert isinstance(resp, KeysQueryResponse), resp
    assert alice.device_id in resp.device_keys[alice.user_id]


async def test_upload_rejects_keys_of_another_user_or_device(server):
    token, user_id, device_id = await _raw_user(server, "alice")
    for uid, did in (("@mallory:test.local", device_id), (user_id, "OTHERDEVICE")):
        keys, _ = device_keys(uid, did)
        status, body = await server.request(
            "POST", "/_matrix/client/v3/keys/upload", token=token, json={"device_keys": keys}
        )
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    assert await _count(server, "e2e_device_keys") == 0


async def test_upload_stores_placeholder_keys_and_unknown_algorithms_as_given(server):
    # As Synapse: the server checks the shape of keys, not their bytes or signatures (the
    # claiming client verifies them), and serves one-time keys of any algorithm.
    token, user_id, device_id = await _raw_user(server, "alice")
    keys = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.curve25519-aes-sha256"],
        "keys": {f"curve25519:{device_id}": "curve25519+key", f"ed25519:{device_id}": "ed+key"},
        "signatures": {user_id: {f"ed25519:{device_id}": "self+signature"}},
    }
    otks = {"my_algorithm:my_id_1": "KIhH", "other_alg:id2": {"key": "k", "signatures": {}}}
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/upload",
        token=token,
        json={"device_keys": keys, "one_time_keys": otks},
    )
    assert status == 200, body
    assert body["one_time_key_counts"]["my_algorithm"] == 1
    assert body["one_time_key_counts"]["other_alg"] == 1
    bob = await server.client("bob")
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=bob.access_token,
        json={"device_keys": {user_id: [device_id]}},
    )
    served = body["device_keys"][user_id][device_id]
    assert status == 200 and served["keys"] == keys["keys"]
    assert "unsigned" in served  # always there, as Synapse serves it
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/claim",
        token=bob.access_token,
        json={"one_time_keys": {user_id: {device_id: "my_algorithm"}}},
    )
    assert status == 200 and body["one_time_keys"][user_id][device_id] == {
        "my_algorithm:my_id_1": "KIhH"
    }, body


async def test_upload_rejects_malformed_keys(server):
    token, user_id, device_id = await _raw_user(server, "alice")
    good, signing = device_keys(user_id, device_id)
    bad_bodies = [
        ({"device_keys": "nope"}, "M_BAD_JSON"),
        ({"device_keys": good, "one_time_keys": {"noalgorithm": "abc"}}, "M_INVALID_PARAM"),
        ({"device_keys": good, "one_time_keys": {"curve25519:AAAA": ["x"]}}, "M_BAD_JSON"),
        ({"device_keys": good, "one_time_keys": {"signed_curve25519:A": {}}}, "M_BAD_JSON"),
        ({"device_keys": {**good, "keys": {"ed25519:X": 1}}}, "M_BAD_JSON"),
        ({"device_keys": {**good, "keys": {"nocolon": "k"}}}, "M_INVALID_PARAM"),
        ({"device_keys": {**good, "signatures": {user_id: "sig"}}}, "M_BAD_JSON"),
        ({"device_keys": {"user_id": user_id, "device_id": device_id}}, "M_BAD_JSON"),
        ({"device_keys": good, "fallback_keys": {"signed_curve25519:A": 5}}, "M_BAD_JSON"),
    ]
    for body_in, errcode in bad_bodies:
        status, body = await server.request(
            "POST", "/_matrix/client/v3/keys/upload", token=token, json=body_in
        )
        assert status == 400 and body["errcode"] == errcode, (body_in, body)
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/upload",
        token=token,
        data=b'{"one_time_keys": {' + b'"x": "' + b"a" * 300_000 + b'"}}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"
    for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
        assert await _count(server, table) == 0


async def test_concurrent_claims_each_get_a_different_key(server):
    token, user_id, device_id = await _raw_user(server, "alice")
    keys, signing = device_keys(user_id, device_id)
    fallback = signed_otks(user_id, signing, 1, start=900)
    fallback = {k.replace("AAAA", "FB"): {**v} for k, v in fallback.items()}
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/upload",
        token=token,
        json={
            "device_keys": keys,
            "one_time_keys": signed_otks(user_id, signing, 10),
            "fallback_keys": fallback,
        },
    )
    assert status == 200 and body["one_time_key_counts"]["signed_curve25519"] == 10, body
    claimers = [await server.client(f"claimer{i}") for i in range(12)]

    async def claim(client):
        status, body = await server.request(
            "POST",
            "/_matrix/client/v3/keys/claim",
            token=client.access_token,
            json={"one_time_keys": {user_id: {device_id: "signed_curve25519"}}},
        )
        assert status == 200, body
        (key_id,) = body["one_time_keys"][user_id][device_id]
        return key_id

    claimed = await asyncio.gather(*(claim(c) for c in claimers))
    one_time = [k for k in claimed if "FB" not in k]
    assert len(one_time) == 10 and len(set(one_time)) == 10
    assert [k for k in claimed if "FB" in k] == [next(iter(fallback))] * 2
    assert await _count(server, "e2e_one_time_keys") == 0
    assert await server.db.fetchval("SELECT used FROM e2e_fallback_keys") is True


async def test_claim_and_query_refuse_bad_input(server):
    token, _, _ = await _raw_user(server, "alice")
    for path, body_in in (
        ("/keys/claim", {"one_time_keys": {"notauser": {"D": "signed_curve25519"}}}),
        ("/keys/claim", {"one_time_keys": {"@a:test.local": {"D": 5}}}),
        ("/keys/query", {"device_keys": {"@a:test.local": "D"}}),
        ("/keys/query", {}),
    ):
        status, body = await server.request(
            "POST", "/_matrix/client/v3" + path, token=token, json=body_in
        )
        assert status == 400 and body["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM"), body


async def test_remote_users_are_reported_as_failures(server):
    token, _, _ = await _raw_user(server, "alice")
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=token,
        json={"device_keys": {"@bob:elsewhere.example": []}},
    )
    assert status == 200
    assert "elsewhere.example" in body["failures"]
