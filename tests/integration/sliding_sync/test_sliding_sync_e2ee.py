"""An encrypted conversation received over sliding sync only: the Megolm key arrives in
the to_device extension, the recipient's key counts and device list changes in the e2ee
extension, and matrix-nio's Olm machine decrypts the message from the room timeline."""

from __future__ import annotations

from nio import Event, MegolmEvent, RoomKeyEvent, RoomMessageText, ToDeviceEvent

from tests.integration.e2ee.test_e2ee_chat import e2e_client, e2e_login, encrypted_room, send_text
from tests.integration.sliding_sync.helpers import Connection

ROOM_LIST = {"lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 10}}}


def encryption(since: str | None = None) -> dict:
    to_device: dict = {"enabled": True}
    if since is not None:
        to_device["since"] = since
    return {"extensions": {"to_device": to_device, "e2ee": {"enabled": True}}}


async def test_encrypted_conversation_over_sliding_sync(server, tmp_path):
    alice = await e2e_client(server, tmp_path, "alice")
    bob = await e2e_client(server, tmp_path, "bob")  # uploads its keys (POST keys/upload)
    room_id = await encrypted_room(alice, bob)

    # Element X's two connections: the room list, and the encryption one.
    rooms = Connection(server, bob.access_token, conn_id="room-list")
    crypto = Connection(server, bob.access_token, conn_id="encryption")
    await rooms.sync(ROOM_LIST)
    resp = await crypto.sync(encryption())
    e2ee = resp["extensions"]["e2ee"]
    otks_before = e2ee["device_one_time_keys_count"]["signed_curve25519"]
    assert otks_before > 0
    assert isinstance(e2ee["device_unused_fallback_key_types"], list)

    # Alice claims one of bob's one-time keys and sends him the room key, then the message.
    await send_text(alice, room_id, "the budget is final")

    resp = await crypto.sync(encryption())
    e2ee = resp["extensions"]["e2ee"]
    assert e2ee["device_one_time_keys_count"]["signed_curve25519"] == otks_before - 1
    to_device = resp["extensions"]["to_device"]
    keys = []
    for raw in to_device["events"]:
        decrypted = bob.olm.handle_to_device_event(ToDeviceEvent.parse_event(raw))
        keys.append(decrypted)
    assert any(isinstance(k, RoomKeyEvent) and k.room_id == room_id for k in keys), keys

    resp = await rooms.sync(ROOM_LIST)
    timeline = resp["rooms"][room_id]["timeline"]
    encrypted = [
        Event.parse_encrypted_event({**e, "room_id": room_id})
        for e in timeline
        if e["type"] == "m.room.encrypted"
    ]
    assert len(encrypted) == 1 and isinstance(encrypted[0], MegolmEvent)
    plain = bob.decrypt_event(encrypted[0])
    assert isinstance(plain, RoomMessageText) and plain.body == "the budget is final"

    # Acknowledged to-device messages are gone; a new device of alice's shows in
    # device_lists.changed.
    await e2e_login(server, tmp_path, "alice")
    resp = await crypto.sync(encryption(since=to_device["next_batch"]))
    assert resp["extensions"]["to_device"]["events"] == []
    assert alice.user_id in resp["extensions"]["e2ee"]["device_lists"]["changed"]
    pending = await server.db.fetchval(
        "SELECT count(*) FROM to_device_messages WHERE user_id = $1 AND device_id = $2",
        bob.user_id,
        bob.device_id,
    )
    assert pending == 0
