"""Membership across servers: joins, invites, leaves and knocks (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federation.membership.invites import Invites
from federation.membership.remote import RemoteMembership
from federation.membership.resident import Resident

if TYPE_CHECKING:
    from homeserver.app import Homeserver


class MembershipFederation:
    """`hs.federation.membership`: the resident side of the handshakes (routes), invites
    both ways, and our users' joins, knocks and leaves through other servers."""

    def __init__(self, hs: Homeserver):
        self.resident = Resident(hs)
        self.invites = Invites(hs, self.resident)
        self.remote = RemoteMembership(hs)
