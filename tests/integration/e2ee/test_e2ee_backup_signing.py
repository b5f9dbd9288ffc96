"""Key backup, cross-signing and device deletion, on the wire (nio has no backup or
cross-signing API; the shapes are those Element sends)."""

from __future__ import annotations

from tests.harness import PASSWORD
from tests.integration.e2ee.helpers import cross_signing_key, device_keys, new_key, public, sign
from tests.integration.e2ee.test_e2ee_chat import e2e_client, e2e_login, encrypted_room, settle

V3 = "/_matrix/client/v3"


def session(index: int, forwarded: int, verified: bool, tag: str) -> dict:
    return {
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag},
    }


async def test_key_backup_round_trip_and_replacement_rules(server):
    alice = await server.client("alice")
    req = lambda m, p, **kw: server.request(m, V3 + p, token=alice.access_token, **kw)  # noqa: E731
    status, body = await req("GET", "/room_keys/version")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    algorithm = "m.megolm_backup.v1.curve25519-aes-sha2"
    status, body = await req(
        "POST",
        "/room_keys/version",
        json={"algorithm": algorithm, "auth_data": {"public_key": "abc", "signatures": {}}},
    )
    assert status == 200
    version = body["version"]

    status, body = await req(
        "PUT",
        f"/room_keys/keys?version={version}",
        json={"rooms": {"!r:test.local": {"sessions": {"s1": session(5, 1, False, "a")}}}},
    )
    assert status == 200 and body["count"] == 1
    etag = body["etag"]
    # Worse copy (higher index) is ignored, and the etag does not move.
    status, body = await req(
        "PUT", f"/room_keys/keys/!r:test.local/s1?version={version}", json=session(9, 0, False, "b")
    )
    assert (status, body["etag"], body["count"]) == (200, etag, 1)
    # A verified copy beats an unverified one even with a higher index.
    status, body = await req(
        "PUT",
        f"/room_keys/keys/!r:test.local?version={version}",
        json={"sessions": {"s1": session(9, 0, True, "c"), "s2": session(0, 0, False, "d")}},
    )
    assert status == 200 and body["count"] == 2 and body["etag"] != etag
    status, body = await req("GET", f"/room_keys/keys/!r:test.local/s1?version={version}")
    assert status == 200 and body["session_data"]["ciphertext"] == "c"
    status, body = await req("GET", f"/room_keys/keys?version={version}")
    assert set(body["rooms"]["!r:test.local"]["sessions"]) == {"s1", "s2"}
    status, body = await req("GET", "/room_keys/version")
    assert body["version"] == version and body["count"] == 2 and body["algorithm"] == algorithm

    # A new version becomes current; uploads to the old one are refused.
    status, body = await req(
        "POST", "/room_keys/version", json={"algorithm": algorithm, "auth_data": {}}
    )
    new_version = body["version"]
    status, body = await req("PUT", f"/room_keys/keys?version={version}", json={"rooms": {}})
    assert status == 403 and body["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert body["current_version"] == new_version

    status, body = await req("DELETE", f"/room_keys/keys/!r:test.local/s2?version={version}")
    assert status == 200 and body["count"] == 1
    status, _ = await req("DELETE", f"/room_keys/version/{version}")
    assert status == 200
    status, body = await req("GET", f"/room_keys/version/{version}")
    assert status == 404


async def test_key_backup_version_of_any_algorithm_and_opaque_auth_data(server):
    # auth_data is the client's opaque value and the algorithm its own choice (as Synapse):
    # both are stored and echoed back, and an update may change auth_data but not algorithm.
    alice = await server.client("alice")
    req = lambda m, p, **kw: server.request(m, V3 + p, token=alice.access_token, **kw)  # noqa: E731
    body_in = {"algorithm": "m.megolm_backup.v1", "auth_data": "anopaquestring"}
    status, body = await req("POST", "/room_keys/version", json=body_in)
    assert status == 200, body
    version = body["version"]
    status, body = await req("GET", "/room_keys/version")
    assert status == 200 and (body["algorithm"], body["auth_data"]) == (
        "m.megolm_backup.v1",
        "anopaquestring",
    )
    status, body = await req(
        "PUT",
        f"/room_keys/version/{version}",
        json={"algorithm": "m.megolm_backup.v1", "auth_data": "other", "version": version},
    )
    assert status == 200, body
    status, body = await req(
        "PUT",
        f"/room_keys/version/{version}",
        json={"algorithm": "changed", "auth_data": "third", "version": version},
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await req("GET", f"/room_keys/version/{version}")
    assert body["auth_data"] == "other"
    # session_data is opaque too.
    data = {**session(0, 0, False, "x"), "session_data": "opaque"}
    status, body = await req("PUT", f"/room_keys/keys/!abcd/1234?version={version}", json=data)
    assert status == 200, body
    status, body = await req("GET", f"/room_keys/keys/!abcd/1234?version={version}")
    assert status == 200 and body["session_data"] == "opaque", body


async def test_key_backup_bad_input_stores_nothing(server):
    alice = await server.client("alice")
    req = lambda m, p, **kw: server.request(m, V3 + p, token=alice.access_token, **kw)  # noqa: E731
    status, body = await req("POST", "/room_keys/version", json={"algorithm": 5, "auth_data": {}})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, body = await req("POST", "/room_keys/version", json={"algorithm": "x"})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    assert await server.db.fetchval("SELECT count(*) FROM room_key_backup_versions") == 0
    algorithm = "m.megolm_backup.v1.curve25519-aes-sha2"
    status, body = await req(
        "POST", "/room_keys/version", json={"algorithm": algorithm, "auth_data": {}}
    )
    version = body["version"]
    status, body = await req("PUT", "/room_keys/keys", json={"rooms": {}})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    bad = session(0, 0, False, "x")
    bad["first_message_index"] = -1
    status, body = await req(
        "PUT",
        f"/room_keys/keys?version={version}",
        json={"rooms": {"!r:x": {"sessions": {"ok": session(0, 0, False, "y"), "bad": bad}}}},
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    assert await server.db.fetchval("SELECT count(*) FROM room_key_backup_keys") == 0


async def test_cross_signing_upload_query_and_signatures(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    token = alice.access_token
    dev_keys, dev_signing = device_keys(alice.user_id, alice.device_id)
    status, _ = await server.request(
        "POST", V3 + "/keys/upload", token=token, json={"device_keys": dev_keys}
    )
    assert status == 200

    # Element's probe under the unstable prefix: 401 with flows.
    status, body = await server.request(
        "POST", "/_matrix/client/unstable/keys/device_signing/upload", token=token, json={}
    )
    assert status == 401 and body["flows"] and body["session"]

    master, self_signing, user_signing = new_key("m"), new_key("s"), new_key("u")
    keys = {
        "master_key": cross_signing_key(alice.user_id, "master", master),
        "self_signing_key": cross_signing_key(alice.user_id, "self_signing", self_signing, master),
        "user_signing_key": cross_signing_key(alice.user_id, "user_signing", user_signing, master),
    }
    # A self-signing key not signed by the master key is refused, and nothing is stored.
    forged = dict(
        keys,
        self_signing_key=cross_signing_key(
            alice.user_id, "self_signing", self_signing, new_key("x")
        ),
    )
    status, body = await server.request(
        "POST", V3 + "/keys/device_signing/upload", token=token, json=forged
    )
    assert status == 400 and body["errcode"] == "M_INVALID_SIGNATURE"
    assert await server.db.fetchval("SELECT count(*) FROM e2e_cross_signing_keys") == 0
    # First upload: no UIA needed.
    status, body = await server.request(
        "POST", V3 + "/keys/device_signing/upload", token=token, json=keys
    )
    assert status == 200, body

    # Sign the device with the self-signing key, and the master key with the device.
    signed_device = sign(dev_keys, alice.user_id, self_signing, public(self_signing))
    signed_master = sign(keys["master_key"], alice.user_id, dev_signing, alice.device_id)
    status, body = await server.request(
        "POST",
        V3 + "/keys/signatures/upload",
        token=token,
        json={alice.user_id: {alice.device_id: signed_device, public(master): signed_master}},
    )
    assert status == 200 and body["failures"] == {}, body
    # A bad signature is reported per key, not stored.
    tampered = sign(dev_keys, alice.user_id, new_key("evil"), public(self_signing))
    status, body = await server.request(
        "POST",
        V3 + "/keys/signatures/upload",
        token=token,
        json={alice.user_id: {alice.device_id: tampered}},
    )
    assert body["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"

    status, body = await server.request(
        "POST",
        V3 + "/keys/query",
        token=bob.access_token,
        json={"device_keys": {alice.user_id: []}},
    )
    assert status == 200
    device_sigs = body["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert (
        device_sigs[f"ed25519:{public(self_signing)}"]
        == signed_device["signatures"][alice.user_id][f"ed25519:{public(self_signing)}"]
    )
    master_sigs = body["master_keys"][alice.user_id]["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in master_sigs
    assert alice.user_id in body["self_signing_keys"]
    assert alice.user_id not in body["user_signing_keys"]  # only for alice herself

    # Replacing the keys now needs UIA; with the password it goes through.
    new_master = new_key("m2")
    replacement = {"master_key": cross_signing_key(alice.user_id, "master", new_master)}
    status, body = await server.request(
        "POST", V3 + "/keys/device_signing/upload", token=token, json=replacement
    )
    assert status == 401
    replacement["auth"] = {
        "type": "m.login.password",
        "session": body["session"],
        "password": PASSWORD,
        "identifier": {"type": "m.id.user", "user": alice.user_id},
    }
    status, body = await server.request(
        "POST", V3 + "/keys/device_signing/upload", token=token, json=replacement
    )
    assert status == 200, body


async def test_deleted_device_disappears_from_queries_and_device_lists(server, tmp_path):
    alice = await e2e_client(server, tmp_path, "alice")
    bob1 = await e2e_client(server, tmp_path, "bob")
    bob2 = await e2e_login(server, tmp_path, "bob")
    room_id = await encrypted_room(alice, bob1)
    await settle(alice)
    status, body = await server.request(
        "POST",
        V3 + "/keys/query",
        token=alice.access_token,
        json={"device_keys": {bob1.user_id: []}},
    )
    assert set(body["device_keys"][bob1.user_id]) == {bob1.device_id, bob2.device_id}
    assert room_id

    resp = await bob1.delete_devices(
        [bob2.device_id],
        auth={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": bob1.user_id},
            "password": PASSWORD,
        },
    )
    assert not hasattr(resp, "status_code") or resp.status_code is None, resp

    sync = await alice.sync(timeout=0)
    assert bob1.user_id in sync.device_list.changed
    status, body = await server.request(
        "POST",
        V3 + "/keys/query",
        token=alice.access_token,
        json={"device_keys": {bob1.user_id: []}},
    )
    assert set(body["device_keys"][bob1.user_id]) == {bob1.device_id}
    assert (
        await server.db.fetchval(
            "SELECT count(*) FROM e2e_one_time_keys WHERE device_id = $1", bob2.device_id
        )
        == 0
    )


async def test_to_device_is_idempotent_and_delivered_until_acknowledged(server, tmp_path):
    alice = await server.client("alice")
    bob = await server.client("bob")
    first = await bob.sync(timeout=0)
    msg = {"messages": {bob.user_id: {"*": {"ciphertext": "opaque"}}}}
    for _ in range(2):
        status, _ = await server.request(
            "PUT", V3 + "/sendToDevice/m.test/txn1", token=alice.access_token, json=msg
        )
        assert status == 200
    status, body = await server.request(
        "GET", V3 + f"/sync?since={first.next_batch}&timeout=0", token=bob.access_token
    )
    events = body["to_device"]["events"]
    assert events == [
        {"sender": alice.user_id, "type": "m.test", "content": {"ciphertext": "opaque"}}
    ]
    # Not acknowledged yet: the same since delivers it again; the next token acknowledges.
    status, again = await server.request(
        "GET", V3 + f"/sync?since={first.next_batch}&timeout=0", token=bob.access_token
    )
    assert again["to_device"]["events"] == events
    status, after = await server.request(
        "GET", V3 + f"/sync?since={again['next_batch']}&timeout=0", token=bob.access_token
    )
    assert after["to_device"]["events"] == []
    assert await server.db.fetchval("SELECT count(*) FROM to_device_messages") == 0

    status, body = await server.request(
        "PUT",
        V3 + "/sendToDevice/m.test/txn2",
        token=alice.access_token,
        json={"messages": {bob.user_id: {"DEV": "not an object"}}},
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    assert await server.db.fetchval("SELECT count(*) FROM to_device_txns") == 1
