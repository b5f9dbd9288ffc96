"""Housekeeping: the scheduled tasks that keep tables bounded and time-based state moving.

Several server processes share one database, so each task runs in one process at a time:
the runner (runner.py) takes the task's PostgreSQL advisory lock, checks in
`housekeeping_runs` that the task has not run anywhere within its period, runs it and
records the run. Periods and retentions are in the `housekeeping` config section. Tests
and operators trigger a task directly with `runner.run_task(name)` (or every due task with
`runner.run_once()`). The tasks, what each deletes or changes, and why that is safe:

- `to_device_txns`: /sendToDevice transaction IDs older than `to_device_txn_retention_s`
  (7 days). The spec (client-server-api "Transaction identifiers") asks a server to treat
  a request with a known txn ID as a retransmission, with no duration; the ID protects the
  sender's retries, not the recipient (whose acknowledged messages, to_device_messages, are
  already deleted by its next /sync). Synapse keeps txn IDs 30 minutes; a week covers any
  client retry queue by a wide margin.
- `event_txns`: the PUT /send and /state transaction IDs (user, device, txn_id -> event_id)
  older than `event_txn_retention_s` (24 hours, as Synapse keeps its event_txn_id rows).
  Same spec wording; a retry after a day would be a new message. A deleted device's rows
  go with it (storage/devices.py).
- `device_list_changes`: rows older than `device_list_retention_s` (30 days). The readers
  are /sync and /keys/changes (federation keeps its own per-user stream ids). Deleting and
  raising the stream's floor (`pruned_streams`) happen in one transaction, and the reader
  sees rows and floor in one statement: a token from before the floor gets every user it
  shares a room with as `changed` (its client re-downloads keys once) instead of missing a
  change. A live /sync's token is minutes old, far above a month-old floor.
- `rejected_events`: `event_outliers` rows with status 'rejected' received more than
  `rejected_event_retention_s` ago (30 days) that no table names (timeline, current state,
  forward extremities, out-of-band memberships, redactions). A rejected event is never
  state and never a valid auth event; if sent again it is rejected again. Rows with status
  'outlier' (auth chains and state of joined rooms) and 'soft_failed' (can still enter
  state through resolution, or be cited by accepted events) are kept.
- `push_notifications`: notifications (one row per notified member of every message,
  half the bytes a message costs: deploy/SIZING.md) made more than
  `push_notification_retention_s` ago (30 days). Their readers: GET /notifications, which
  lists the last 30 days only, and the badge count sent to push gateways (notifications
  after the user's read receipt), which stops counting unread ones older than that.
  Pushers are past them: the push worker sends each as it makes it. Deleted in batches,
  so that no transaction holds a month of rows.
- `media`: cached remote media older than `remote_media_max_age_s` (fetched again when
  asked for; quarantines outlive the cache entry), unused upload reservations past their
  expiry, and URL previews a day past theirs (MediaRepository.reap_expired).
- `presence`: local users inactive for `presence_idle_timeout_s` go from online to
  unavailable, and after `presence_offline_timeout_s` to offline (spec presence.md "Idle
  timeout"); each change takes a presence position and wakes the /sync of whoever shares a
  room with them. A /sync sets them online again.
- `erasure`: deactivation with `erase: true` leaves a `user_erasures` row; this task
  rewrites the user's events to their redacted form in batches (erasure.py).
- `self_destruct`: with `ephemeral_messages.enabled`, events past their MSC2228
  `org.matrix.self_destruct_after` are rewritten to their redacted form
  (self_destruct.py); each process also runs it by timer at the next expiry it knows of.
- Tasks of other domains, passed in by the composition root: `account_validity`
  (renewal mails and deactivation of expired accounts, homeserver/accounts/validity.py;
  every `account_validity.check_interval`) and `threepid_sessions` (e-mail validation
  sessions never spent, a day after their token expired).

Not a cluster task: devices' last_seen_ts / last_seen_ip are noted in memory on each
authenticated request and written in one statement every `last_seen_flush_s` and at stop
(last_seen.py), by every process for what it saw.

Events the erasure, expiry and self-destruct tasks rewrite leave every process's event
cache by the triggers of migration 1891, whichever process runs the task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from homeserver.config import EphemeralMessagesConfig, HousekeepingConfig
from homeserver.housekeeping.erasure import Eraser
from homeserver.housekeeping.last_seen import DeviceActivity
from homeserver.housekeeping.runner import HousekeepingRunner, Task
from homeserver.housekeeping.self_destruct import SelfDestruct
from storage.database import Database
from storage.events import EventCache
from storage.housekeeping import ExpiryStore, HousekeepingStore

if TYPE_CHECKING:
    from homeserver.media.repository import MediaRepository
    from homeserver.presence.service import Presence
    from homeserver.sync.notifier import Notifier

_OUTLIER_BATCH = 500
# Notifications deleted per transaction, and transactions per run at most (the next run
# goes on: a first run on a year of rows must not hold the runner for hours).
_PUSH_NOTIFICATION_BATCH = 5_000
_PUSH_NOTIFICATION_BATCHES = 200


class Housekeeping:
    """The runner with its tasks, and the devices' last_seen recorder."""

    def __init__(
        self,
        config: HousekeepingConfig,
        db: Database,
        notifier: Notifier,
        presence: Presence,
        media: MediaRepository,
        event_cache: EventCache,
        ephemeral_messages: EphemeralMessagesConfig,
        other_tasks: Sequence[Task] = (),
    ):
        self.config = config
        self.store = HousekeepingStore(db)
        self.notifier = notifier
        self.presence = presence
        self.media = media
        self.device_activity = DeviceActivity(self.store, config.last_seen_flush_s)
        self.eraser = Eraser(self.store, event_cache.invalidate, config.erasure_batch)
        # Its timers run the task through the runner, so only while the runner is enabled.
        self.self_destruct = SelfDestruct(
            ExpiryStore(db),
            event_cache.invalidate,
            lambda: self.runner.run_task("self_destruct"),
            ephemeral_messages.enabled and config.enabled,
        )
        prune = config.prune_interval_s
        self.runner = HousekeepingRunner(
            self.store,
            [
                Task("to_device_txns", prune, self._txn_pruner("to_device_txns")),
                Task("event_txns", prune, self._txn_pruner("event_txns")),
                Task("device_list_changes", prune, self._prune_device_list_changes),
                Task("rejected_events", prune, self._prune_rejected_events),
                Task("push_notifications", prune, self._prune_push_notifications),
                Task("media", prune, self._expire_media),
                Task("presence", config.presence_interval_s, self._presence_time_out),
                Task("erasure", config.erasure_interval_s, self.eraser.run),
                Task("self_destruct", ephemeral_messages.check_interval_s, self.self_destruct.run),
                *other_tasks,
            ],
            config.tick_s,
        )

    async def start(self) -> None:
        await self.device_activity.start()
        if self.config.enabled:
            await self.runner.start()
            await self.self_destruct.start()

    async def stop(self) -> None:
        self.self_destruct.stop()
        await self.runner.stop()
        await self.device_activity.stop()

    async def erase_now(self) -> None:
        """Runs the erasure task at once (after a deactivation with `erase`) rather than at
        its next period: servers and users that fetch the events a moment later get them
        redacted (SyTest 32room-getevent "Inbound federation redacts events from erased
        users"). Busy elsewhere: the next period does it."""
        if self.config.enabled:
            await self.runner.run_task("erasure")

    # --- the tasks (SQL in storage/housekeeping.py; see the module docstring) ----------------

    def _txn_pruner(self, table: str) -> Callable[[int], Awaitable[int]]:
        retention_s = {
            "to_device_txns": self.config.to_device_txn_retention_s,
            "event_txns": self.config.event_txn_retention_s,
        }[table]

        async def prune(now: int) -> int:
            return await self.store.prune_txns(table, now - retention_s * 1000)

        return prune

    async def _prune_device_list_changes(self, now: int) -> int:
        # Only positions this process knows committed (every lower one is committed too).
        below = self.notifier.current_token().get("device_lists", 0) + 1
        return await self.store.prune_device_list_changes(
            now - self.config.device_list_retention_s * 1000, below
        )

    async def _prune_rejected_events(self, now: int) -> int:
        before = now - self.config.rejected_event_retention_s * 1000
        total = 0
        while True:
            count = await self.store.prune_rejected_events(before, _OUTLIER_BATCH)
            total += count
            if count < _OUTLIER_BATCH:
                return total

    async def _prune_push_notifications(self, now: int) -> int:
        before = now - self.config.push_notification_retention_s * 1000
        total = 0
        for _ in range(_PUSH_NOTIFICATION_BATCHES):
            count = await self.store.prune_push_notifications(before, _PUSH_NOTIFICATION_BATCH)
            total += count
            if count < _PUSH_NOTIFICATION_BATCH:
                break
        return total

    async def _expire_media(self, now: int) -> int:
        await self.media.reap_expired(now)
        if self.config.remote_media_max_age_s is None:
            return 0
        return await self.media.purge_remote_cache(now - self.config.remote_media_max_age_s * 1000)

    async def _presence_time_out(self, now: int) -> int:
        changed = await self.presence.time_out(
            now,
            self.config.presence_idle_timeout_s * 1000,
            self.config.presence_offline_timeout_s * 1000,
        )
        return len(changed)
