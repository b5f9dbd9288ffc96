"""The federation services, built once by homeserver.app as `hs.federation`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2ee.service import RemoteE2EE
from federation.acl import server_allowed_by_acl
from federation.backfill import Backfiller
from federation.client import FederationClient
from federation.edus import Edus
from federation.hierarchy import RemoteHierarchy
from federation.inbound import InboundPdus
from federation.key_fetcher import KeyFetcher
from federation.membership import MembershipFederation
from federation.policy import ServerPolicy
from federation.remote_keys import RemoteKeys
from federation.sender import FederationSender
from federation.server_keys import ServerKeys
from federation.transactions import TransactionReceiver
from homeserver.http.errors import MatrixError
from storage.federation import FederationStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver


class Federation:
    def __init__(self, hs: Homeserver):
        config = hs.config.federation
        self.policy = ServerPolicy(config.allowed_servers)
        self.store = FederationStore(hs.db)
        self.server_keys = ServerKeys(
            hs.server_name, hs.signing_key, self.store, config.key_validity_s
        )
        self.client = FederationClient(hs.server_name, hs.signing_key, self.policy, config)
        self.keys = KeyFetcher(
            self.server_keys, self.store, self.client, config.trusted_key_servers
        )
        self.sender = FederationSender(hs, self)
        self.edu_handlers: dict = {}
        self.edus = Edus(hs, self)
        self.remote_keys = RemoteKeys(hs, self, self.edus.device_lists)
        self._hs = hs
        self.inbound = InboundPdus(hs)
        self.transactions = TransactionReceiver(hs, self)
        self.backfiller = Backfiller(hs, self.inbound)
        self.membership = MembershipFederation(hs)
        self.hierarchy = RemoteHierarchy(hs.server_name, self.client, self.policy)

    def remote_e2ee(self) -> RemoteE2EE | None:
        """What the e2ee services need of us, or None when this server does not federate."""
        if not self.policy.federates:
            return None
        return RemoteE2EE(
            to_device=self.edus.to_device,
            device_lists=self.edus.device_lists,
            query_keys=self.remote_keys.query,
            claim_keys=self.remote_keys.claim,
        )

    async def acl_allows(self, room_id: str, server_name: str) -> bool:
        """Whether the room's m.room.server_acl lets `server_name` take part."""
        try:
            acl = await self._hs.events.current_state_event(room_id, "m.room.server_acl")
        except MatrixError:  # a room we do not know has no ACL we could apply
            return True
        return server_allowed_by_acl(acl.content if acl is not None else None, server_name)

    async def start(self) -> None:
        await self.server_keys.start()
        if self.policy.federates:
            await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop()
        await self.client.close()
