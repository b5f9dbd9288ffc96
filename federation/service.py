"""The federation services, built once by homeserver.app as `hs.federation`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federation.client import FederationClient
from federation.edus import Edus
from federation.key_fetcher import KeyFetcher
from federation.membership import MembershipFederation
from federation.policy import ServerPolicy
from federation.remote_keys import RemoteKeys
from federation.sender import FederationSender
from federation.server_keys import ServerKeys
from federation.transactions import TransactionReceiver
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
        # Transactions and EDUs (fed-edus): the outbound queue, /send, EDU handlers.
        # Plan's name for fed-core's function (hs.events is built before us).
        self.servers_in_room = hs.events.servers_in_room
        self.sender = FederationSender(hs, self)
        self.edu_handlers: dict = {}
        self.edus = Edus(hs, self)
        self.remote_keys = RemoteKeys(hs, self, self.edus.device_lists)
        self.transactions = TransactionReceiver(hs, self)
        self.membership = MembershipFederation(hs)

    async def start(self) -> None:
        await self.server_keys.start()
        if self.policy.federates:
            # The services hooked here (e2ee, presence) are built after us.
            self.edus.install()
            self.remote_keys.install()
            await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop()
        await self.client.close()
