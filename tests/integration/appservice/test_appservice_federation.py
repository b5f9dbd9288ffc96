"""Ephemeral data from other servers reaches an appservice as local data does (MSC2409):
presence, typing and receipts of a remote user sharing a room with the bridge's bot."""

from __future__ import annotations

from tests.federation_ca import FEDERATED_PRESENCE, start_federating_server
from tests.integration.appservice.helpers import start_bridge, write_registration


async def test_remote_presence_typing_and_receipts_reach_the_appservice(make_server, ca, tmp_path):
    reg = write_registration(tmp_path, server_regex=r"hs1\.test\.local:\d+")
    hs1 = await start_federating_server(
        make_server,
        ca,
        "hs1.test.local",
        ["hs2.test.local"],
        app_services=[str(reg.path)],
        config=FEDERATED_PRESENCE,
    )
    hs2 = await start_federating_server(
        make_server, ca, "hs2.test.local", ["hs1.test.local"], config=FEDERATED_PRESENCE
    )
    bridge = await start_bridge(hs1.base_url, reg, domain=hs1.server_name)
    try:
        az = bridge.appservice
        carol = await hs2.client("carol")
        room_id = (await carol.room_create(invite=[az.bot_mxid])).room_id
        await az.intent.join_room(room_id, servers=[hs2.server_name])

        status, _ = await hs2.request(
            "PUT",
            f"/_matrix/client/v3/presence/{carol.user_id}/status",
            token=carol.access_token,
            json={"presence": "online", "status_msg": "at my desk"},
        )
        assert status == 200
        presence = await bridge.wait_for(
            lambda e: (
                str(getattr(e, "type", "")) == "m.presence"
                and str(getattr(e, "sender", "")) == carol.user_id
            )
        )
        assert presence.content.presence.value == "online"

        await carol.room_typing(room_id, True, 10_000)
        await bridge.wait_for(
            lambda e: (
                str(getattr(e, "type", "")) == "m.typing"
                and carol.user_id in [str(u) for u in e.content.user_ids]
            )
        )
        event_id = (
            await carol.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
        ).event_id
        await carol.room_read_markers(room_id, event_id, event_id)
        await bridge.wait_for(
            lambda e: str(getattr(e, "type", "")) == "m.receipt" and event_id in e.content
        )
    finally:
        await bridge.appservice.stop()
