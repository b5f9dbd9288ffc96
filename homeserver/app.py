"""The composition root: builds every service once and mounts every package's routes."""

from __future__ import annotations

import asyncio
import importlib
import logging
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from homeserver.config import Config
from homeserver.http.context import HS_KEY
from homeserver.http.middleware import matrix_middleware
from homeserver.http.ratelimit import RateLimiter
from homeserver.keys import load_signing_key
from homeserver.metrics import REGISTRY, db_pool_connections
from homeserver.sync.notifier import Notifier
from storage.database import Database
from storage.streams import Streams

logger = logging.getLogger(__name__)

# Every module here has a `routes` RouteTable. Add a package's routes by adding one line.
ROUTE_MODULES = (
    "homeserver.misc.routes",
    "homeserver.accounts.routes",
    "homeserver.rooms.routes",
    "homeserver.rooms.ephemeral",
    "homeserver.sync.routes",
    "federation.routes.well_known",
    "homeserver.push.routes",
    "homeserver.presence.routes",
    "homeserver.directory.routes",
    "e2ee.routes",
    "homeserver.media.routes",
    "homeserver.accounts.openid",
)

MAX_REQUEST_BYTES = 100 * 1024 * 1024


@dataclass
class Homeserver:
    config: Config
    db: Database
    signing_key: object
    notifier: Notifier = field(init=False)
    streams: Streams = field(init=False)
    services: dict = field(default_factory=dict)

    def __post_init__(self):
        self.server_name = self.config.server_name
        limits = self.config.rate_limits
        self.notifier = Notifier()
        self.streams = Streams(self.db, self.notifier.on_change)
        self.ip_limiter = RateLimiter("ip", limits.per_ip, limits.enabled)
        self.user_limiter = RateLimiter("user", limits.per_user, limits.enabled)
        self.login_limiter = RateLimiter("login", limits.login, limits.enabled)
        self.register_limiter = RateLimiter("register", limits.register, limits.enabled)
        self._background: set[asyncio.Task] = set()
        self._build_services()

    def _build_services(self) -> None:
        # Imported here: services import the Homeserver type for hints only.
        from homeserver.rooms.events_service import EventService
        from storage.ephemeral import EphemeralStore
        from storage.events import EventStore
        from storage.membership import MembershipStore

        self.event_store = EventStore(self.db)
        self.membership_store = MembershipStore(self.db)
        self.ephemeral_store = EphemeralStore(self.db)
        from storage.out_of_band import OutOfBandStore

        self.out_of_band = OutOfBandStore(self.db, self.streams)
        from homeserver.accounts.service import AccountService

        self.accounts = AccountService(self)
        self.events = EventService(self)
        from federation.service import Federation

        self.federation = Federation(self)
        from homeserver.misc.wiring import install as install_misc  # push, presence, directory

        install_misc(self)
        from e2ee.service import E2EEService  # after accounts: hooks device deletion

        self.e2ee = E2EEService(self)
        from homeserver.media.repository import MediaRepository

        self.media = MediaRepository(self)
        from homeserver.sync.handler import SyncHandler
        from homeserver.sync.streams import stream_providers

        self.sync_handler = SyncHandler(
            self.accounts.filters,
            self.presence,
            self.notifier,
            stream_providers(self),
            self.config.max_sync_timeout_ms,
        )

    def run_in_background(self, coro) -> asyncio.Task:
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

    async def stop(self) -> None:
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
