"""A mautrix-python appservice against our server: it pings us, receives transactions,
creates ghost users and sends as them; namespaces are enforced on the way."""

from __future__ import annotations

from mautrix.types import EventType, Membership
from nio import RoomCreateResponse, RoomPreset, RoomSendResponse, SyncResponse

from tests.integration.appservice.helpers import SERVER_NAME, start_bridge, write_registration
from tests.integration.federation.helpers import eventually


async def test_bridge_receives_transactions_and_sends_as_ghosts(make_server, tmp_path):
    reg = write_registration(tmp_path)
    server = await make_server(app_services=[str(reg.path)])
    bridge = await start_bridge(server.base_url, reg)
    try:
        bot = bridge.appservice.intent
        # POST /_matrix/client/v1/appservice/{id}/ping: the server reaches the bridge, and
        # a sub-millisecond round trip is not reported as 0 (mautrix turns 0 into -1).
        assert await bridge.appservice.ping_self("txn-ping") > 0

        alice = await server.client("alice")
        created = await alice.room_create(preset=RoomPreset.public_chat, invite=[bot.mxid])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        # The bot's invite reaches the bridge in a transaction.
        invite = await bridge.wait_for(
            lambda e: (
                e.type == EventType.ROOM_MEMBER
                and e.state_key == bot.mxid
                and e.content.membership == Membership.INVITE
            )
        )
        assert invite.room_id == room_id and invite.sender == alice.user_id
        await bot.join_room(room_id)

        # A ghost: registered by the bridge (m.login.application_service), joined, talking.
        ghost = bot.user(f"@_bridge_bob:{SERVER_NAME}")
        await ghost.ensure_joined(room_id)
        sent = await ghost.send_text(room_id, "hello from the other network")

        resp = await alice.sync(timeout=0)
        assert isinstance(resp, SyncResponse)
        timeline = resp.rooms.join[room_id].timeline.events
        [message] = [e for e in timeline if e.event_id == sent]
        assert message.sender == ghost.mxid and message.body == "hello from the other network"

        # Alice's message and typing reach the bridge, events then ephemeral (MSC2409).
        answer = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "hi bob"}
        )
        assert isinstance(answer, RoomSendResponse)
        received = await bridge.wait_for(lambda e: getattr(e, "event_id", None) == answer.event_id)
        assert received.content.body == "hi bob"
        await alice.room_typing(room_id, True, timeout=5000)
        typing = await bridge.wait_for(
            lambda e: e.type == EventType.TYPING and alice.user_id in e.content.user_ids
        )
        assert typing.room_id == room_id

        # Everything was delivered: the queue empties (rows go when the 200 arrives).
        async def queue_empty() -> bool:
            return await server.hs.appservices.store.pending_count(reg.id) == 0

        await eventually(queue_empty)

        # The bridge cannot act as users outside its namespace.
        stranger = bot.user(alice.user_id)
        try:
            await stranger.whoami()
            raise AssertionError("masquerading outside the namespace was allowed")
        except Exception as e:  # mautrix maps 403 M_EXCLUSIVE to a generic MatrixRequestError
            assert getattr(e, "errcode", None) == "M_EXCLUSIVE", e
    finally:
        await bridge.appservice.stop()


async def test_namespaces_and_tokens_on_the_wire(make_server, tmp_path):
    reg = write_registration(tmp_path)
    other = write_registration(tmp_path, as_id="other", prefix="_other_", url=None)
    server = await make_server(app_services=[str(reg.path), str(other.path)])
    token = reg.as_token

    # Normal registration in an exclusive namespace: 400 M_EXCLUSIVE.
    status, body = await server.request(
        "POST", "/_matrix/client/v3/register", json={"username": "_bridge_x", "password": "x" * 12}
    )
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = await server.request(
        "GET", "/_matrix/client/v3/register/available?username=_bridge_x"
    )
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")

    # m.login.application_service registration: without a token, with a wrong one, outside
    # the namespace, then right.
    reg_body = {"type": "m.login.application_service", "username": "_bridge_carol"}
    status, body = await server.request("POST", "/_matrix/client/v3/register", json=reg_body)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await server.request(
        "POST", "/_matrix/client/v3/register", json=reg_body, token="nope"
    )
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/register",
        json={**reg_body, "username": "_other_carol"},
        token=token,
    )
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = await server.request(
        "POST", "/_matrix/client/v3/register", json={**reg_body, "inhibit_login": True}, token=token
    )
    carol = f"@_bridge_carol:{SERVER_NAME}"
    assert status == 200 and body["user_id"] == carol and "access_token" not in body

    # Masquerading: inside the namespace, outside it, and an unknown device.
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/account/whoami?user_id={carol}", token=token
    )
    assert (status, body["user_id"]) == (200, carol)
    status, body = await server.request("GET", "/_matrix/client/v3/account/whoami", token=token)
    assert (status, body["user_id"]) == (200, f"@_bridge_bot:{SERVER_NAME}")
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/account/whoami?user_id=@_other_x:{SERVER_NAME}", token=token
    )
    assert (status, body["errcode"]) == (403, "M_EXCLUSIVE")
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/account/whoami?user_id={carol}&device_id=NOPE", token=token
    )
    assert (status, body["errcode"]) == (400, "M_UNKNOWN_DEVICE")

    # MSC4190: the appservice creates a device for its user (201), uses it, deletes it
    # without user-interactive auth.
    path = f"/_matrix/client/v3/devices/BRIDGEDEV?user_id={carol}"
    status, _ = await server.request("PUT", path, json={"display_name": "bridge"}, token=token)
    assert status == 201
    status, _ = await server.request("PUT", path, json={"display_name": "renamed"}, token=token)
    assert status == 200
    status, body = await server.request(
        "GET",
        f"/_matrix/client/v3/account/whoami?user_id={carol}&org.matrix.msc3202.device_id=BRIDGEDEV",
        token=token,
    )
    assert (status, body["device_id"]) == (200, "BRIDGEDEV")
    status, _ = await server.request("DELETE", path, json={}, token=token)
    assert status == 200
    assert await server.hs.accounts.devices.get_device(carol, "BRIDGEDEV") is None

    # m.login.application_service login for a user of the namespace.
    status, body = await server.request(
        "POST",
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": "_bridge_carol"},
        },
        token=token,
    )
    assert status == 200 and body["user_id"] == carol and body["access_token"]

    # Ping: another appservice's ID (403), a user's token (403), no URL (400), and a
    # bridge that is down (502 M_CONNECTION_FAILED).
    ping = "/_matrix/client/v1/appservice/{}/ping"
    status, body = await server.request("POST", ping.format("other"), json={}, token=token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    user = await server.client("dave")
    status, body = await server.request(
        "POST", ping.format("bridge"), json={}, token=user.access_token
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request("POST", ping.format("other"), json={}, token=other.as_token)
    assert (status, body["errcode"]) == (400, "M_URL_NOT_SET")
    status, body = await server.request("POST", ping.format("bridge"), json={}, token=token)
    assert (status, body["errcode"]) == (502, "M_CONNECTION_FAILED")
