"""An invite from another server to a room ours is not in notifies the invitee's push
gateway, with the room's name from the invite's stripped state."""

from __future__ import annotations

from nio import RoomCreateResponse, RoomInviteResponse

from tests.integration.rooms.test_push_delivery import Gateway, _pusher


async def test_remote_invite_is_pushed_with_room_name(pair):
    hs1, hs2 = pair
    gateway = Gateway()
    await gateway.start()
    try:
        alice = await hs1.client("alice")
        status, body = await _pusher(hs1, alice, gateway.url, "key-1")
        assert status == 200, body
        charlie = await hs2.client("charlie")
        created = await charlie.room_create(name="Far Away")
        assert isinstance(created, RoomCreateResponse), created
        invited = await charlie.room_invite(created.room_id, alice.user_id)
        assert isinstance(invited, RoomInviteResponse), invited

        pushed = await gateway.next()
        assert pushed["type"] == "m.room.member" and pushed["room_id"] == created.room_id
        assert pushed["sender"] == charlie.user_id
        assert pushed["membership"] == "invite" and pushed["user_is_target"] is True
        assert pushed["room_name"] == "Far Away"
        assert pushed["counts"]["unread"] == 1

        status, body = await hs1.request(
            "GET", "/_matrix/client/v3/notifications", token=alice.access_token
        )
        assert status == 200, body
        [listed] = body["notifications"]
        assert listed["room_id"] == created.room_id
        assert listed["event"]["content"]["membership"] == "invite"
    finally:
        assert gateway.runner is not None
        await gateway.runner.cleanup()
