"""The federation services, built once by homeserver.app as `hs.federation`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federation.client import FederationClient
from federation.key_fetcher import KeyFetcher
from federation.membership import MembershipFederation
from federation.policy import ServerPolicy
from federation.server_keys import ServerKeys
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
        self.membership = MembershipFederation(hs)

    async def start(self) -> None:
        await self.server_keys.start()

    async def stop(self) -> None:
        await self.client.close()
