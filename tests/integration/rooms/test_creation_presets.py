"""State a preset creates."""

from __future__ import annotations

from nio import RoomGetStateResponse, RoomPreset


async def test_public_chat_sends_no_guest_access_event(server):
    """Its absence forbids guests already; Synapse sends none either."""
    alice = await server.client()
    public = (await alice.room_create(preset=RoomPreset.public_chat)).room_id
    private = (await alice.room_create(preset=RoomPreset.private_chat)).room_id
    state = await alice.room_get_state(public)
    assert isinstance(state, RoomGetStateResponse)
    types = {e["type"] for e in state.events}
    assert "m.room.guest_access" not in types and "m.room.join_rules" in types
    state = await alice.room_get_state(private)
    assert isinstance(state, RoomGetStateResponse)
    [guest] = [e for e in state.events if e["type"] == "m.room.guest_access"]
    assert guest["content"] == {"guest_access": "can_join"}
