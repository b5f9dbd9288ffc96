"""Starting the real server in-process on a loopback port, and real matrix-nio clients."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from nio import AsyncClient, AsyncClientConfig, LoginResponse, RegisterResponse

from homeserver.app import (
    Homeserver,
    build_client_app,
    build_metrics_app,
    create_homeserver,
    shut_down,
)
from homeserver.config import parse_config
from homeserver.http.serving import make_runner
from homeserver.keys import write_signing_key

PASSWORD = "correct horse battery staple"


@dataclass
class TestServer:
    hs: Homeserver
    base_url: str
    metrics_url: str
    runners: list[web.AppRunner]
    clients: list[AsyncClient] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    federation_url: str | None = None  # https://127.0.0.1:PORT/ when federating
    closed: bool = False

    @property
    def server_name(self) -> str:
        return self.hs.server_name

    @property
    def db(self):
        return self.hs.db

    async def make_admin(self, user_id: str) -> None:
        """Grants the admin flag in the database, as another process (or the operator's
        `make-admin`) would, and waits until this server has dropped the cached session
        (invalidations from other writers arrive asynchronously)."""
        await self.db.execute("UPDATE users SET is_admin = TRUE WHERE user_id = $1", user_id)
        await self.hs.user_cache.barrier()

    async def client(
        self,
        localpart: str | None = None,
        *,
        encryption: bool = False,
        store_path: str | None = None,
        password: str = PASSWORD,
    ) -> AsyncClient:
        """A matrix-nio client, registered and logged in as a new user."""
        localpart = localpart or f"user{secrets.token_hex(4)}"
        client = self.new_client(localpart, encryption=encryption, store_path=store_path)
        resp = await client.register(localpart, password)
        assert isinstance(resp, RegisterResponse), resp
        return client

    def new_client(
        self, localpart: str, *, encryption: bool = False, store_path: str | None = None
    ) -> AsyncClient:
        config = AsyncClientConfig(encryption_enabled=encryption, store_sync_tokens=False)
        client = AsyncClient(
            self.base_url.rstrip("/"),
            f"@{localpart}:{self.server_name}",
            config=config,
            store_path=store_path or "",
        )
        self.clients.append(client)
        return client

    async def login(self, localpart: str, password: str = PASSWORD, **kw) -> AsyncClient:
        client = self.new_client(localpart, **kw)
        resp = await client.login(password)
        assert isinstance(resp, LoginResponse), resp
        return client

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json=None,
        data=None,
        headers=None,
    ) -> tuple[int, dict]:
        """Raw HTTP, for testing the wire itself (errors, bad input)."""
        if self.http is None:
            self.http = aiohttp.ClientSession()
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.base_url.rstrip("/") + path, json=json, data=data, headers=hdrs
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = {}
            return resp.status, body

    async def close(self) -> None:
        # Idempotent: a test may stop a server (to restart it) before the fixture does.
        if self.closed:
            return
        self.closed = True
        for client in self.clients:
            await client.close()
        if self.http is not None:
            await self.http.close()
        await shut_down(self.hs, self.runners)


async def start_test_server(dsn: str, data_dir: Path, **overrides) -> TestServer:
    """`federation_socket=` (a bound socket) serves the federation listener on it, so that
    the server name can carry the port before the server starts."""
    federation_socket = overrides.pop("federation_socket", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    # A key id of its own: a server of a later test may get an earlier one's port (and so
    # its name), and the session's Synapse would verify it with the earlier key it cached.
    write_signing_key(data_dir / "signing.key", version=f"t{secrets.token_hex(4)}")
    raw = {
        "server_name": overrides.pop("server_name", "test.local"),
        "data_dir": str(data_dir),
        "listeners": {"client": "127.0.0.1:1"},  # replaced by the real port below
        "database": {"dsn": dsn, "min_size": 1, "max_size": 10},
        "registration": {"open": True, "shared_secret": "test-shared-secret"},
        "rate_limits": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    config = parse_config(raw, data_dir)
    hs = await create_homeserver(config, dsn)
    runners = []
    urls = []
    for app in (build_client_app(hs), build_metrics_app(hs)):
        runner = make_runner(app, hs.config.http)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}/")
    federation_url = None
    if config.federation.listener:
        federation_url = await _start_federation_listener(hs, runners, federation_socket)
    return TestServer(
        hs=hs,
        base_url=urls[0],
        metrics_url=urls[1] + "metrics",
        runners=runners,
        federation_url=federation_url,
    )


async def _start_federation_listener(hs: Homeserver, runners: list, sock) -> str:
    from federation.app import build_federation_app, federation_ssl_context

    runner = make_runner(build_federation_app(hs), hs.config.http)
    await runner.setup()
    runners.append(runner)
    tls = federation_ssl_context(hs)
    listener = hs.config.federation.listener
    if sock is not None:
        site: web.BaseSite = web.SockSite(runner, sock, ssl_context=tls)
    else:
        site = web.TCPSite(runner, listener.host, listener.port, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return f"https://127.0.0.1:{port}/"
