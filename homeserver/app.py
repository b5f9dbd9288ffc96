"""The composition root: builds every service once and mounts every package's routes."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from signedjson.types import SigningKey

from e2ee.service import E2EEService
from federation.media_fetcher import FederationMediaFetcher
from federation.service import Federation
from homeserver.accounts.service import AccountService
from homeserver.admin.service import AdminService
from homeserver.appservice.service import AppServices
from homeserver.config import Config, ConfigError
from homeserver.housekeeping import Housekeeping
from homeserver.housekeeping.runner import Task
from homeserver.http.context import HS_KEY
from homeserver.http.middleware import matrix_middleware
from homeserver.http.ratelimit import RateLimiter
from homeserver.keys import load_signing_key
from homeserver.media.repository import MediaRepository
from homeserver.metrics import (
    REGISTRY,
    db_pool_connections,
    db_pool_waits,
    federation_queue_depth,
    to_device_backlog,
)
from homeserver.policy.service import RoomPolicy
from homeserver.presence.service import Presence
from homeserver.push.pusher import PushWorker
from homeserver.push.rules import PushRules
from homeserver.relations.service import RelationsService
from homeserver.rooms.events_service import EventService
from homeserver.search.service import SearchService
from homeserver.sliding_sync.handler import SlidingSync
from homeserver.spaces.hierarchy import SpaceHierarchy
from homeserver.sync.caches import SyncCaches
from homeserver.sync.handler import SyncHandler
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams import stream_providers
from homeserver.sync.unread import UnreadCounter
from homeserver.user_cache import UserCaches
from storage.availability import Outage
from storage.database import Database
from storage.devices import DeviceStore
from storage.directory import DirectoryStore
from storage.ephemeral import EphemeralStore
from storage.events import EventStore
from storage.external_users import ExternalUserStore
from storage.membership import MembershipStore
from storage.operational_stats import OperationalStats
from storage.out_of_band import OutOfBandStore
from storage.presence import PresenceStore
from storage.push import PushStore
from storage.relations import RelationsStore
from storage.room_summaries import RoomSummaryStore
from storage.search import SearchStore, UnknownLanguage
from storage.sliding_sync import SlidingSyncStore
from storage.spaces import SpacesStore
from storage.streams import Streams

logger = logging.getLogger(__name__)

# Every module here has a `routes` RouteTable. Add a package's routes by adding one line.
ROUTE_MODULES = (
    "homeserver.misc.routes",
    "homeserver.accounts.routes",
    "homeserver.rooms.routes",
    "homeserver.sync.routes",
    "homeserver.sliding_sync.routes",
    "federation.routes.well_known",
    "federation.routes.openid",
    "federation.routes.onbind",
    "homeserver.push.routes",
    "homeserver.presence.routes",
    "homeserver.directory.routes",
    "e2ee.routes",
    "homeserver.media.routes",
    "homeserver.admin.routes",
    "homeserver.spaces.routes",
    "homeserver.appservice.routes",
    "homeserver.relations.routes",
    "homeserver.search.routes",
    "homeserver.identity.routes",
)

# Queue depths in /metrics are counted at most this often (seconds).
QUEUE_SAMPLE_S = 15.0


class Homeserver:
    """Every service of one server process, each built once here, in dependency order.

    Every attribute is declared below with its type: a handler reaches a service through
    `get_hs(request).<service>`, and nothing adds attributes later. Services built later in
    the order may be used by earlier ones at run time (never in their constructors).
    """

    config: Config
    db: Database
    signing_key: SigningKey
    server_name: str
    notifier: Notifier
    streams: Streams
    ip_limiter: RateLimiter
    user_limiter: RateLimiter
    login_limiter: RateLimiter
    register_limiter: RateLimiter
    event_store: EventStore
    policy: RoomPolicy
    membership_store: MembershipStore
    ephemeral_store: EphemeralStore
    out_of_band: OutOfBandStore
    room_summaries: RoomSummaryStore
    search_store: SearchStore
    search: SearchService
    accounts: AccountService
    appservices: AppServices
    push_worker: PushWorker
    events: EventService
    relations: RelationsService
    push_store: PushStore
    push_rules: PushRules
    presence: Presence
    directory: DirectoryStore
    spaces_store: SpacesStore
    spaces: SpaceHierarchy
    federation: Federation
    e2ee: E2EEService
    media: MediaRepository
    housekeeping: Housekeeping
    admin: AdminService
    sync_caches: SyncCaches
    unread_counts: UnreadCounter
    sync_handler: SyncHandler
    sliding_sync: SlidingSync
    db_outage: Outage
    user_cache: UserCaches

    def __init__(self, config: Config, db: Database, signing_key: SigningKey):
        self.config = config
        self.db = db
        self.signing_key = signing_key
        self.server_name = config.server_name
        limits = config.rate_limits
        self.db_outage = Outage(lambda: db.pool)
        self.notifier = Notifier()
        self.streams = Streams(db, self.notifier.on_change)
        self.ip_limiter = RateLimiter("ip", limits.per_ip, limits.enabled)
        self.user_limiter = RateLimiter("user", limits.per_user, limits.enabled)
        self.login_limiter = RateLimiter("login", limits.login, limits.enabled)
        self.register_limiter = RateLimiter("register", limits.register, limits.enabled)
        self._background: set[asyncio.Task] = set()
        self.event_store = EventStore(db)
        self.membership_store = MembershipStore(db)
        self.ephemeral_store = EphemeralStore(db)
        self.out_of_band = OutOfBandStore(db, self.streams)
        local_suffix = ":" + self.server_name
        self.room_summaries = RoomSummaryStore(db, lambda user_id: user_id.endswith(local_suffix))
        self.search_store = SearchStore(db, config.search.language)
        self.accounts = AccountService(self)
        # Before events: EventService queues the appservice outbox in its commits.
        self.appservices = AppServices(self)
        self.push_worker = PushWorker(self)
        # Room access rules and external users (issue 15), run beside the auth rules.
        self.policy = RoomPolicy(config, self.event_store, ExternalUserStore(db))
        self.events = EventService(self)
        self.relations = RelationsService(self, RelationsStore(db), self.event_store)
        self.search = SearchService(self)
        self.push_store = PushStore(db, self.streams)
        self.push_rules = PushRules(self.push_store, self.notifier)
        self.presence = Presence(PresenceStore(db, self.streams), self.notifier)
        self.presence.mode = config.presence.mode
        self.directory = DirectoryStore(db)
        self.spaces_store = SpacesStore(db)
        self.spaces = SpaceHierarchy(self, self.spaces_store)
        self.federation = Federation(self)
        # After accounts (it hooks device deletion) and federation (whose EDUs it queues).
        self.e2ee = E2EEService(self, self.federation.remote_e2ee())
        remote_media = FederationMediaFetcher(self.federation.client)  # used when federating
        self.media = MediaRepository(
            self, remote_media if config.federation.allowed_servers else None
        )
        self.housekeeping = Housekeeping(
            config.housekeeping,
            db,
            self.notifier,
            self.presence,
            self.media,
            self.event_store.cache,
            config.ephemeral_messages,
            [
                Task(
                    "account_validity",
                    config.account_validity.check_interval_s,
                    self.accounts.validity.run,
                ),
                Task(
                    "threepid_sessions",
                    config.housekeeping.prune_interval_s,
                    self.accounts.threepids.prune,
                ),
            ],
        )
        self.admin = AdminService(self)
        # Access tokens' sessions and key counts, invalidated by triggers (migration 1600).
        self.user_cache = UserCaches(db, DeviceStore(db), self.e2ee.key_store)
        # Last: /sync's stream providers read the stores of all the services above.
        self.sync_caches = SyncCaches(
            self.notifier,
            self.membership_store,
            self.event_store,
            self.accounts.profiles,
            self.out_of_band,
            self.accounts.account_data,
        )
        self.unread_counts = UnreadCounter(
            self.ephemeral_store,
            self.event_store,
            self.push_rules,
            self.sync_caches,
            self.notifier,
        )
        providers = stream_providers(self)
        self.sync_handler = SyncHandler(
            self.accounts.filters,
            self.presence,
            self.notifier,
            self.sync_caches,
            providers,
            config.max_sync_timeout_ms,
        )
        # Its extensions are the sections of /sync v2's providers, by stream name.
        self.sliding_sync = SlidingSync(
            SlidingSyncStore(db),
            self.room_summaries,
            self.event_store,
            self.membership_store,
            self.out_of_band,
            self.accounts.account_data,
            self.ephemeral_store,
            self.spaces_store,
            self.sync_caches,
            self.unread_counts,
            self.relations,
            self.notifier,
            {p.stream: p for p in providers},
            config.max_sync_timeout_ms,
        )

    def run_in_background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def start(self) -> None:
        try:
            await self.search_store.check_language()
        except UnknownLanguage as e:
            raise ConfigError(
                "search.language", f"PostgreSQL has no text-search configuration {e}"
            ) from None
        self.notifier.start(await self.streams.current_positions())
        self.user_cache.register()
        self.user_cache.on_event_changed = self.event_store.cache.invalidate
        await self.db.listen(self.streams.on_notify, self._listen_reconnected)
        await self.events.start()
        await self.federation.start()
        await self.appservices.start()
        await self.push_worker.start()
        await self.media.start()
        await self.housekeeping.start()

    async def _listen_reconnected(self) -> None:
        # Notifications sent while the LISTEN connection was down are lost.
        self.user_cache.clear()
        self.event_store.cache.clear()
        await self.streams.resync()

    async def stop(self) -> None:
        await self.housekeeping.stop()  # first: its last flush needs the services and db
        await self.events.stop()
        await self.federation.stop()
        await self.appservices.stop()
        await self.push_worker.stop()
        await self.media.stop()
        self.notifier.stop()
        await self.db_outage.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def build_client_app(hs: Homeserver) -> web.Application:
    # Bodies are read by http/request.read_body (routes may allow more) and media uploads
    # stream; this bounds whatever else reads one.
    app = web.Application(
        middlewares=[matrix_middleware], client_max_size=hs.config.http.max_body_bytes
    )
    app[HS_KEY] = hs
    for name in ROUTE_MODULES:
        importlib.import_module(name).routes.mount(app)
    return app


def build_metrics_app(hs: Homeserver) -> web.Application:
    stats = OperationalStats(hs.db)
    sampled_at = [-QUEUE_SAMPLE_S]

    async def sample_queues() -> None:
        # Counting rows costs a query each; a scrape every few seconds (or several
        # Prometheus servers) reuses the last figures for QUEUE_SAMPLE_S.
        now = time.monotonic()
        if now - sampled_at[0] < QUEUE_SAMPLE_S:
            return
        sampled_at[0] = now
        depths = await stats.federation_queue_depths()
        federation_queue_depth.clear()
        for destination, n in depths.items():
            federation_queue_depth.labels(destination).set(n)
        to_device_backlog.set(await stats.to_device_backlog())

    async def metrics(_request: web.Request) -> web.Response:
        in_use, size = hs.db.pool_stats()
        db_pool_connections.labels("in_use").set(in_use)
        db_pool_connections.labels("open").set(size)
        await sample_queues()
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def shut_down(hs: Homeserver | None, runners: list[web.AppRunner]) -> None:
    """Stops serving, then the services, then the database. The waiting /sync long-polls
    are answered first: each runner's clean-up waits for its running requests."""
    if hs is not None:
        hs.notifier.stop()
    for runner in reversed(runners):
        await runner.cleanup()
    if hs is not None:
        await hs.stop()
        await hs.db.close()


async def create_homeserver(config: Config, dsn: str) -> Homeserver:
    signing_key = load_signing_key(config.signing_key_path)
    db = Database(
        dsn, config.database.min_size, config.database.max_size, on_pool_wait=db_pool_waits.observe
    )
    await db.open()
    hs = Homeserver(config, db, signing_key)
    try:
        await hs.start()
    except ConfigError:
        await db.close()  # refused before anything started: nothing else to stop
        raise
    return hs
