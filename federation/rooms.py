"""Server names of user IDs. Which servers are in a room, and which share one with a
user: storage.membership.MembershipStore (`hs.membership_store`).

User IDs are @localpart:server_name and localparts hold no colon, so the server name is
everything after the first colon (it may carry a port).
"""

from __future__ import annotations


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]
