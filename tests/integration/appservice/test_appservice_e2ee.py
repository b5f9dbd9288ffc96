"""An encrypted bridge (MSC3202/MSC4190/MSC4203): the bridge's bot gets a device through
PUT /devices (MSC4190), uploads keys as that device (device masquerading), learns of its
one-time key use and of its to-device messages only through transactions, and its own
Olm machine (mautrix.crypto) decrypts what a matrix-nio user sends into the room."""

from __future__ import annotations

import asyncio
import logging

from mautrix.client import Client
from mautrix.crypto import OlmMachine
from mautrix.crypto.store import MemoryCryptoStore, StateStore
from mautrix.types import EncryptedEvent, EncryptionAlgorithm, EventType
from mautrix.types import RoomEncryptionStateEventContent as EncryptionContent

from tests.integration.appservice.helpers import start_bridge, write_registration
from tests.integration.e2ee.test_e2ee_chat import ENCRYPTION, e2e_client, e2e_login, send_text

BOT_DEVICE = "BRIDGEBOT"


class OneRoomState(StateStore):
    """What the Olm machine asks about rooms: every room is encrypted with Megolm."""

    def __init__(self) -> None:
        self.rooms: list = []

    async def is_encrypted(self, room_id) -> bool:
        return True

    async def get_encryption_info(self, room_id) -> EncryptionContent:
        return EncryptionContent(algorithm=EncryptionAlgorithm.MEGOLM_V1)

    async def find_shared_rooms(self, user_id) -> list:
        return self.rooms


async def _until(condition, seen, timeout_s: float = 15.0) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not seen in time: {seen}")


async def test_bridge_decrypts_with_its_own_olm_machine(make_server, tmp_path):
    reg = write_registration(tmp_path, **{"org.matrix.msc3202": True, "io.element.msc4190": True})
    server = await make_server(app_services=[str(reg.path)])
    bridge = await start_bridge(server.base_url, reg, encryption_events=True)
    az = bridge.appservice
    client = Client(
        mxid=az.bot_mxid, base_url=server.base_url.rstrip("/"), log=logging.getLogger("bridge")
    )
    try:
        client.api.token = reg.as_token
        await client.create_device_msc4190(device_id=BOT_DEVICE, initial_display_name="bridge")
        crypto_store = MemoryCryptoStore(az.bot_mxid, "pickle")
        await crypto_store.put_device_id(BOT_DEVICE)
        state = OneRoomState()
        crypto = OlmMachine(client, crypto_store, state)
        await crypto.load()
        await crypto.share_keys()  # device keys and one-time keys, as BRIDGEBOT
        az.otk_handler = crypto.handle_as_otk_counts
        az.device_list_handler = crypto.handle_as_device_lists
        az.to_device_handler = crypto.handle_as_to_device_event
        counts: list[dict] = []
        original_otk = crypto.handle_as_otk_counts

        async def on_otk(otk_counts):
            counts.append(otk_counts)
            await original_otk(otk_counts)

        az.otk_handler = on_otk
        lists: list = []
        original_lists = crypto.handle_as_device_lists

        async def on_device_lists(device_lists):
            lists.append(device_lists)
            await original_lists(device_lists)

        az.device_list_handler = on_device_lists

        alice = await e2e_client(server, tmp_path, "alice")

        room_id = await alice.room_create(
            invite=[az.bot_mxid],
            initial_state=[ENCRYPTION],
        )
        room_id = room_id.room_id
        state.rooms.append(room_id)
        await az.intent.join_room(room_id)

        event_id = await send_text(alice, room_id, "the meeting moved to 3pm")
        encrypted = await bridge.wait_for(lambda e: getattr(e, "event_id", None) == event_id)
        assert encrypted.type == EventType.ROOM_ENCRYPTED
        assert isinstance(encrypted, EncryptedEvent)
        decrypted = await crypto.decrypt_megolm_event(encrypted)
        assert decrypted.content.body == "the meeting moved to 3pm"
        assert decrypted.sender == alice.user_id

        # Alice's client claimed one of the bot's one-time keys: the bridge was told the
        # new count (MSC3202) for its device.
        assert any(az.bot_mxid in c and BOT_DEVICE in c[az.bot_mxid] for c in counts), counts

        # MSC3202 device lists, as /sync tells a client: a new device of alice's is a
        # change; once she leaves the bridge's only shared room, she is "left".
        await e2e_login(server, tmp_path, "alice")
        await _until(lambda: any(alice.user_id in (d.changed or []) for d in lists), lists)
        await alice.room_leave(room_id)
        await _until(lambda: any(alice.user_id in (d.left or []) for d in lists), lists)
        assert not any(alice.user_id in (d.left or []) for d in lists[:-1])
    finally:
        await client.api.session.close()
        await bridge.appservice.stop()
