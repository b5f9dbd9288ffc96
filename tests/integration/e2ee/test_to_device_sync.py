"""To-device messages in /sync: delivered once, and a device with nothing pending costs
its next /sync no query (one message to a big room wakes every member's)."""

from __future__ import annotations

from nio import SyncResponse

from homeserver.sync.streams.to_device import ToDeviceStream


async def test_nothing_pending_is_not_asked_again_and_messages_arrive_once(server):
    alice, bob = await server.client(), await server.client()
    (stream,) = [p for p in server.hs.sync_handler.providers if isinstance(p, ToDeviceStream)]
    store = stream.store
    asked = []
    pending = store.pending

    async def counting(user_id, device_id, up_to):
        asked.append(user_id)
        return await pending(user_id, device_id, up_to)

    store.pending = counting
    try:
        first = await bob.sync(timeout=0)
        assert isinstance(first, SyncResponse), first
        assert asked == [bob.user_id]
        second = await bob.sync(timeout=0, since=first.next_batch)
        assert isinstance(second, SyncResponse), second
        assert asked == [bob.user_id] and second.to_device_events == []

        status, body = await server.request(
            "PUT",
            "/_matrix/client/v3/sendToDevice/m.test/txn1",
            token=alice.access_token,
            json={"messages": {bob.user_id: {bob.device_id: {"n": 1}}}},
        )
        assert status == 200, body
        third = await bob.sync(timeout=0, since=second.next_batch)
        assert [e.source["content"] for e in third.to_device_events] == [{"n": 1}]
        fourth = await bob.sync(timeout=0, since=third.next_batch)
        assert fourth.to_device_events == []
        asked.clear()
        await bob.sync(timeout=0, since=fourth.next_batch)
        assert asked == []
    finally:
        store.pending = pending
