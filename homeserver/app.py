"""The composition root: builds every service once and mounts every package's routes."""

from __future__ import annotations

import asyncio
import importlib
import logging
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
from homeserver.config import Config
from homeserver.housekeeping import Housekeeping
from homeserver.http.context import HS_KEY
from homeserver.http.middleware import matrix_middleware
from homeserver.http.ratelimit import RateLimiter
from homeserver.keys import load_signing_key
from homeserver.media.repository import MediaRepository
from homeserver.metrics import REGISTRY, db_pool_connections
from homeserver.presence.service import Presence
from homeserver.push.rules import PushRules
from homeserver.rooms.events_service import EventService
from homeserver.sync.handler import SyncHandler
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams import stream_providers
from storage.database import Database
from storage.directory import DirectoryStore
from storage.ephemeral import EphemeralStore
from storage.events import EventStore
from storage.membership import MembershipStore
from storage.out_of_band import OutOfBandStore
from storage.presence import PresenceStore
from storage.push import PushStore
from storage.streams import Streams

logger = logging.getLogger(__name__)

# Every module here has a `routes` RouteTable. Add a package's routes by adding one line.
ROUTE_MODULES = (
    "homeserver.misc.routes",
    "homeserver.accounts.routes",
    "homeserver.rooms.routes",
    "homeserver.sync.routes",
    "federation.routes.well_known",
    "homeserver.push.routes",
    "homeserver.presence.routes",
    "homeserver.directory.routes",
    "e2ee.routes",
    "homeserver.media.routes",
)

MAX_REQUEST_BYTES = 100 * 1024 * 1024


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
    membership_store: MembershipStore
    ephemeral_store: EphemeralStore
    out_of_band: OutOfBandStore
    accounts: AccountService
    events: EventService
    push_store: PushStore
    push_rules: PushRules
    presence: Presence
    directory: DirectoryStore
    federation: Federation
    e2ee: E2EEService
    media: MediaRepository
    housekeeping: Housekeeping
    sync_handler: SyncHandler

    def __init__(self, config: Config, db: Database, signing_key: SigningKey):
        self.config = config
        self.db = db
        self.signing_key = signing_key
        self.server_name = config.server_name
        limits = config.rate_limits
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
        self.accounts = AccountService(self)
        self.events = EventService(self)
        self.push_store = PushStore(db, self.streams)
        self.push_rules = PushRules(self.push_store, self.notifier)
        self.presence = Presence(PresenceStore(db, self.streams), self.notifier)
        self.directory = DirectoryStore(db)
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
        )
        # Last: /sync's stream providers read the stores of all the services above.
        self.sync_handler = SyncHandler(
            self.accounts.filters,
            self.presence,
            self.notifier,
            stream_providers(self),
            config.max_sync_timeout_ms,
        )

    def run_in_background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def start(self) -> None:
        self.notifier.start(await self.streams.current_positions())
        await self.db.listen(self.streams.on_notify)
        await self.events.start()
        await self.federation.start()
        await self.media.start()
        await self.housekeeping.start()

    async def stop(self) -> None:
        await self.housekeeping.stop()  # first: its last flush needs the services and db
        await self.events.stop()
        await self.federation.stop()
        await self.media.stop()
        self.notifier.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def build_client_app(hs: Homeserver) -> web.Application:
    app = web.Application(middlewares=[matrix_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[HS_KEY] = hs
    for name in ROUTE_MODULES:
        importlib.import_module(name).routes.mount(app)
    return app


def build_metrics_app(hs: Homeserver) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        in_use, size = hs.db.pool_stats()
        db_pool_connections.labels("in_use").set(in_use)
        db_pool_connections.labels("open").set(size)
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def create_homeserver(config: Config, dsn: str) -> Homeserver:
    signing_key = load_signing_key(config.signing_key_path)
    db = Database(dsn, config.database.min_size, config.database.max_size)
    await db.open()
    hs = Homeserver(config, db, signing_key)
    await hs.start()
    return hs
