"""Encrypted rooms end to end with matrix-nio[e2e]: Olm/Megolm through this server."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid

from nio import MegolmEvent, RoomMessageText, SyncResponse

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def settle(client):
    """One sync, then the key traffic a real client does after it."""
    resp = await client.sync(timeout=0, full_state=client.next_batch is None)
    assert isinstance(resp, SyncResponse), resp
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    return resp


async def e2e_client(server, tmp_path, localpart):
    store = tmp_path / f"store-{localpart}-{uuid.uuid4().hex[:6]}"
    store.mkdir()
    client = await server.client(localpart, encryption=True, store_path=str(store))
    await settle(client)
    return client


async def e2e_login(server, tmp_path, localpart):
    store = tmp_path / f"store-{localpart}-{uuid.uuid4().hex[:6]}"
    store.mkdir()
    client = await server.login(localpart, encryption=True, store_path=str(store))
    await settle(client)
    return client


async def encrypted_room(alice, *others) -> str:
    resp = await alice.room_create(invite=[o.user_id for o in others], initial_state=[ENCRYPTION])
    room_id = resp.room_id
    for other in others:
        await settle(other)
        joined = await other.join(room_id)
        assert getattr(joined, "room_id", None) == room_id, joined
    return room_id


def decrypted_texts(resp: SyncResponse, room_id: str) -> list[str]:
    room = resp.rooms.join.get(room_id)
    if room is None:
        return []
    return [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]


def undecrypted(resp: SyncResponse, room_id: str) -> list[MegolmEvent]:
    room = resp.rooms.join.get(room_id)
    return [e for e in room.timeline.events if isinstance(e, MegolmEvent)] if room else []


async def send_text(client, room_id: str, text: str):
    await settle(client)
    resp = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": text},
        ignore_unverified_devices=True,
    )
    assert getattr(resp, "event_id", None), resp
    return resp.event_id


async def test_two_users_chat_and_the_database_never_holds_plaintext(server, tmp_path):
    alice = await e2e_client(server, tmp_path, "alice")
    bob = await e2e_client(server, tmp_path, "bob")
    room_id = await encrypted_room(alice, bob)
    secret = f"the budget is {uuid.uuid4().hex}"
    await send_text(alice, room_id, secret)

    resp = await settle(bob)
    assert decrypted_texts(resp, room_id) == [secret]
    stored = await server.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.encrypted'", room_id
    )
    assert stored == 1

    dump = _pg_dump(server)
    assert room_id.encode() in dump  # the dump is of the right database
    assert secret.encode() not in dump
    assert secret.split()[-1].encode() not in dump


async def test_one_user_with_two_devices_both_decrypt(server, tmp_path):
    alice = await e2e_client(server, tmp_path, "alice")
    bob1 = await e2e_client(server, tmp_path, "bob")
    bob2 = await e2e_login(server, tmp_path, "bob")
    assert bob1.device_id != bob2.device_id
    room_id = await encrypted_room(alice, bob1)
    await settle(bob2)
    await send_text(alice, room_id, "hello both of you")
    for device in (bob1, bob2):
        resp = await settle(device)
        assert decrypted_texts(resp, room_id) == ["hello both of you"], device.device_id


def _pg_dump(server) -> bytes:
    """The server's database as pg_dump writes it. The embedded PostgreSQL (pgserver) may
    be newer than the system's pg_dump, which refuses a newer server: take the first
    pg_dump that can dump it."""
    candidates = [
        shutil.which("pg_dump"),
        *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), reverse=True),
    ]
    try:
        import pgserver

        candidates.insert(
            0, os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin", "pg_dump")
        )
    except ImportError:
        pass
    failures = []
    for binary in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        done = subprocess.run([binary, "--dbname", server.hs.db.dsn], capture_output=True)
        if done.returncode == 0:
            return done.stdout
        failures.append(f"{binary}: {done.stderr.decode(errors='replace').strip()}")
    raise AssertionError("no pg_dump could dump the database: " + "; ".join(failures))


async def test_late_device_gets_the_room_key_by_request_and_forward(server, tmp_path):
    alice = await e2e_client(server, tmp_path, "alice")
    bob1 = await e2e_client(server, tmp_path, "bob")
    room_id = await encrypted_room(alice, bob1)
    await send_text(alice, room_id, "sent before the new device existed")
    assert decrypted_texts(await settle(bob1), room_id) == ["sent before the new device existed"]

    bob2 = await e2e_login(server, tmp_path, "bob")
    resp = await bob2.room_messages(room_id, start="", limit=10)
    missing = [e for e in resp.chunk if isinstance(e, MegolmEvent)]
    assert len(missing) == 1, resp.chunk
    await settle(bob2)

    # The old device learns of the new one through device_lists, and trusts it.
    await settle(bob1)
    bob2_on_bob1 = bob1.device_store[bob1.user_id][bob2.device_id]
    bob1.verify_device(bob2_on_bob1)
    # ...and the new device trusts the old one: nio accepts forwarded keys only from
    # verified devices of its own user.
    bob2.olm.users_for_key_query.add(bob2.user_id)
    await bob2.keys_query()
    bob2.verify_device(bob2.device_store[bob2.user_id][bob1.device_id])
    # An Olm session to the new device (one-time key claimed through this server).
    await bob1.keys_claim({bob1.user_id: [bob2.device_id]})
    await bob2.request_room_key(missing[0])

    # bob1 receives the m.room_key_request by to-device; nio answers a verified device's
    # request itself, else it waits for continue_key_share.
    await settle(bob1)
    for request in bob1.get_active_key_requests(bob1.user_id, bob2.device_id):
        bob1.continue_key_share(request)
    await bob1.send_to_device_messages()

    await settle(bob2)
    resp = await bob2.room_messages(room_id, start="", limit=10)
    texts = [e.body for e in resp.chunk if isinstance(e, RoomMessageText)]
    assert texts == ["sent before the new device existed"]
