"""The e2ee service: one object on the Homeserver (`hs.e2ee`) owning keys, device
lists, to-device messages, cross-signing and key backup, and the hooks other packages
call when devices come and go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from e2ee.backup import KeyBackup
from e2ee.cross_signing import CrossSigning
from e2ee.devices.device_lists import DeviceListOutbox, DeviceLists
from e2ee.keys import KeyService, RemoteKeysCall
from e2ee.to_device import RemoteToDevice, ToDevice
from storage.e2ee_backup import BackupStore
from storage.e2ee_device_lists import DeviceListStore
from storage.e2ee_keys import E2EKeyStore
from storage.e2ee_to_device import ToDeviceStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver


@dataclass(frozen=True)
class RemoteE2EE:
    """What the federation package lends these services when the server federates:
    to-device and device-list EDUs queued in the caller's transaction, and key queries
    and claims for users of other servers. The composition root hands it in."""

    to_device: RemoteToDevice
    device_lists: DeviceListOutbox
    query_keys: RemoteKeysCall
    claim_keys: RemoteKeysCall


class E2EEService:
    def __init__(self, hs: Homeserver, remote: RemoteE2EE | None = None):
        self.hs = hs
        self.key_store = E2EKeyStore(hs.db)
        self.to_device_store = ToDeviceStore(hs.db)
        self.device_lists = DeviceLists(
            hs,
            DeviceListStore(hs.db),
            hs.membership_store,
            remote.device_lists if remote else None,
        )
        self.keys = KeyService(
            hs,
            self.key_store,
            self.device_lists,
            remote.query_keys if remote else None,
            remote.claim_keys if remote else None,
        )
        self.cross_signing = CrossSigning(hs, self.key_store, self.device_lists)
        self.to_device = ToDevice(hs, self.to_device_store, remote.to_device if remote else None)
        self.backup = KeyBackup(BackupStore(hs.db))
        hs.accounts.devices_deleted_hooks.append(self.on_devices_deleted)
        hs.accounts.device_changed_hooks.append(self.on_device_changed)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """After devices are deleted: drop their keys and inboxes, tell who tracks them."""

        async def forget(conn) -> None:
            for device_id in device_ids:
                await self.key_store.delete_device(conn, user_id, device_id)
                await self.to_device_store.delete_device(conn, user_id, device_id)

        await self.device_lists.mark_changed([user_id], work=forget)

    async def on_device_deleted(self, user_id: str, device_id: str) -> None:
        await self.on_devices_deleted(user_id, [device_id])

    async def on_device_changed(self, user_id: str) -> None:
        """A device was created (login) or renamed: others re-fetch the user's devices."""
        await self.device_lists.mark_changed([user_id])
