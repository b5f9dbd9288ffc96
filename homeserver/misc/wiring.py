"""Builds the services of the packages around rooms (push, presence, directory) on the
Homeserver, so that the composition root needs one call for all of them."""

from __future__ import annotations


def install(hs) -> None:
    from homeserver.push.rules import PushRules
    from storage.push import PushStore

    hs.push_store = PushStore(hs.db, hs.streams)
    hs.push_rules = PushRules(hs.push_store, hs.notifier)

    from homeserver.presence.service import Presence
    from storage.presence import PresenceStore

    hs.presence = Presence(PresenceStore(hs.db, hs.streams), hs.notifier)

    from storage.directory import DirectoryStore

    hs.directory = DirectoryStore(hs.db)
