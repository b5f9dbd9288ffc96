"""Which member events each device was already sent under lazy loading.

With `lazy_load_members`, an incremental /sync sends the member events of the timeline's
senders that the device has not had yet (spec: "Lazy-loading room members"), unless the
filter sets `include_redundant_members`. What was sent is remembered in memory per
(user, device, room), as Synapse does: a process that lost it (restart, another worker)
sends some member events again, which is redundant, never wrong.
"""

from __future__ import annotations

from collections import OrderedDict

# Devices remembered (least recently syncing forgotten first) and rooms per device.
MAX_DEVICES = 10_000
MAX_ROOMS_PER_DEVICE = 1_000


class LazyMembersSent:
    def __init__(self) -> None:
        self._devices: OrderedDict[tuple[str, str], OrderedDict[str, dict[str, str]]] = (
            OrderedDict()
        )

    def _rooms(self, user_id: str, device_id: str) -> OrderedDict[str, dict[str, str]]:
        key = (user_id, device_id)
        rooms = self._devices.get(key)
        if rooms is None:
            rooms = self._devices[key] = OrderedDict()
            while len(self._devices) > MAX_DEVICES:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(key)
        return rooms

    def sent(self, user_id: str, device_id: str, room_id: str) -> dict[str, str]:
        """member user ID -> the member event ID last sent to this device in this room."""
        return dict(self._rooms(user_id, device_id).get(room_id, {}))

    def record(
        self, user_id: str, device_id: str, room_id: str, members: dict[str, str], reset: bool
    ) -> None:
        """Notes member events sent; `reset` (an initial or full-state sync) forgets the
        room's earlier ones first."""
        rooms = self._rooms(user_id, device_id)
        room = {} if reset else rooms.get(room_id, {})
        room.update(members)
        rooms[room_id] = room
        rooms.move_to_end(room_id)
        while len(rooms) > MAX_ROOMS_PER_DEVICE:
            rooms.popitem(last=False)
