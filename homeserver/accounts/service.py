"""AccountService: the stores of the accounts domain, and the operations several endpoints
share (starting a login session, deleting devices)."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from homeserver.accounts.cas import CasService
from homeserver.accounts.identity_servers import IdentityServers
from homeserver.accounts.recaptcha import Recaptcha
from homeserver.accounts.threepids import ThreepidService
from homeserver.accounts.validity import AccountValidity
from homeserver.email.mailer import Mailer
from homeserver.http.auth import hash_token, new_access_token
from storage.account_data import AccountDataStore
from storage.account_validity import AccountValidityStore
from storage.accounts import AccountStore, ProfileStore
from storage.devices import DeviceStore
from storage.filters import FilterStore
from storage.openid import OpenIdStore
from storage.registration_tokens import NonceStore, RegistrationTokenStore
from storage.sso import SsoStore
from storage.threepids import ThreepidStore
from storage.uia import UIASessionStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

DevicesDeletedHook = Callable[[str, list[str]], Awaitable[None]]
DeviceChangedHook = Callable[[str], Awaitable[None]]


def new_device_id() -> str:
    """Ten uppercase letters, like Synapse: clients display and type these."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


class AccountService:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        db = hs.db
        self.users = AccountStore(db)
        self.profiles = ProfileStore(db)
        self.devices = DeviceStore(db)
        self.uia_sessions = UIASessionStore(db)
        self.registration_tokens = RegistrationTokenStore(db)
        self.nonces = NonceStore(db)
        self.account_data = AccountDataStore(db)
        self.filters = FilterStore(db)
        # Issued by accounts/routes/openid.py, checked by federation/routes/openid.py.
        self.openid_tokens = OpenIdStore(db)
        # E-mail identity and account validity (both off unless configured).
        mailer = Mailer(hs.config.email)
        threepid_store = ThreepidStore(db)
        self.threepids = ThreepidService(hs, threepid_store, mailer)
        # Bindings at identity servers (none unless identity.id_servers names some).
        self.identity_servers = IdentityServers(hs, threepid_store)
        self.validity = AccountValidity(hs, AccountValidityStore(db), threepid_store, mailer)
        # Single sign-on through CAS and the registration captcha (both off unless configured).
        self.sso = SsoStore(db)
        self.cas = CasService(hs, self.sso)
        self.recaptcha = Recaptcha(hs.config.recaptcha)
        # Other domains (e2ee device keys, to-device inboxes, pushers) register here to
        # clean up after devices that no longer exist: `async def hook(user_id, device_ids)`.
        self.devices_deleted_hooks: list[DevicesDeletedHook] = []
        # And here to hear of a device created (login, registration) or renamed:
        # `async def hook(user_id)` (e2ee: others' device lists move).
        self.device_changed_hooks: list[DeviceChangedHook] = []

    def is_server_admin(self, user_id: str, is_admin_flag: bool) -> bool:
        return is_admin_flag or user_id in self.hs.config.admins

    async def start_session(
        self,
        conn,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        ip: str | None,
    ) -> tuple[str, str]:
        """Creates (or reuses) a device and a new access token in the caller's transaction.

        Returns (access_token, device_id); only the token's hash is stored.
        """
        device_id = device_id or new_device_id()
        token = new_access_token()
        await self.devices.ensure_device(conn, user_id, device_id, display_name, ip)
        await self.devices.add_token(conn, hash_token(token), user_id, device_id)
        return token, device_id

    async def device_changed(self, user_id: str) -> None:
        """After a device of `user_id` was created or renamed (its transaction committed)."""
        for hook in self.device_changed_hooks:
            await hook(user_id)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> list[str]:
        """Deletes devices and their tokens, then tells the other domains."""
        if not device_ids:
            return []
        async with self.hs.db.acquire() as conn:
            async with conn.transaction():
                deleted = await self.devices.delete_devices(conn, user_id, device_ids)
        await self._run_deleted_hooks(user_id, deleted)
        return deleted

    async def _run_deleted_hooks(self, user_id: str, device_ids: list[str]) -> None:
        if not device_ids:
            return
        for hook in self.devices_deleted_hooks:
            try:
                await hook(user_id, device_ids)
            except Exception:
                logger.exception("device deletion hook %r failed", hook)
