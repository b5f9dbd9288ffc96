"""The /sync stream providers, one per kind of change (Dendrite's syncapi/streams), all
registered here and nowhere else.

To sync a new kind of change: give it a stream in storage/streams.py, write a provider
(homeserver/sync/streams/base.py) that reads it through its store, and add it below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.sync.streams.account_data import AccountDataStream
from homeserver.sync.streams.base import StreamProvider
from homeserver.sync.streams.device_lists import DeviceListsStream
from homeserver.sync.streams.presence import PresenceStream
from homeserver.sync.streams.receipts import ReceiptsStream
from homeserver.sync.streams.rooms import RoomsStream
from homeserver.sync.streams.to_device import ToDeviceStream
from homeserver.sync.streams.typing import TypingStream

if TYPE_CHECKING:
    from homeserver.app import Homeserver

__all__ = ["StreamProvider", "stream_providers"]


def stream_providers(hs: Homeserver) -> list[StreamProvider]:
    """Every provider, in the order they run: rooms first (the others read the room sets
    it leaves in the context)."""
    notifier = hs.notifier
    return [
        RoomsStream(
            hs.event_store,
            hs.membership_store,
            hs.out_of_band,
            hs.sync_caches,
            hs.unread_counts,
            notifier,
            hs.relations,
        ),
        TypingStream(hs.ephemeral_store, notifier),
        ReceiptsStream(hs.ephemeral_store, notifier),
        AccountDataStream(hs.accounts.account_data, notifier),
        PresenceStream(hs.presence, hs.membership_store, notifier),
        ToDeviceStream(hs.e2ee.to_device_store, notifier),
        DeviceListsStream(
            hs.e2ee.device_lists,
            hs.membership_store,
            hs.user_cache.key_status,
            notifier,
        ),
    ]
