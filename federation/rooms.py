"""Server names of user IDs. Which servers are in a room: storage.membership.MembershipStore.

User IDs are @localpart:server_name and localparts hold no colon, so the server name is
everything after the first colon (it may carry a port).
"""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database
from storage.membership import MembershipStore


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


async def servers_in_rooms(db: Database, room_ids: Iterable[str]) -> dict[str, set[str]]:
    """{room_id: joined servers}: kept for federation.sender until it takes the
    membership store from the composition root."""
    return await MembershipStore(db).servers_in_rooms(room_ids)
