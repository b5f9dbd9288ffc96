"""Synapse as a federation peer for the interop tests (one per test session).

Synapse is installed from PyPI into .synapse-venv (interop/synapse.py, shared with the
benchmark), gets a fresh PostgreSQL database on the tests' cluster, and listens on loopback:
plain HTTP for its client API, TLS for federation with a certificate from a test CA that it
also trusts (`federation_custom_ca_list`; verification stays on).

Names: Synapse is `127.0.0.1:PORT` (an IP literal: its certificate carries an IP SAN) and
our servers are `localhost:PORT` (a DNS name: the certificate's DNS SAN), names that
resolve on any machine without DNS set-up. Synapse's `federation_domain_whitelist` compares
whole server names, ports included, and is fixed at start, so the session reserves a pool
of loopback ports up front (bound sockets) and admits `localhost:PORT` for each; every
test's server of ours takes a fresh one, so Synapse never mixes up two test servers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from nio import AsyncClient, AsyncClientConfig, LoginResponse

from interop import synapse
from tests.federation_ca import (
    FEDERATED_PRESENCE,
    TestCA,
    bound_loopback_socket,
    start_federating_server,
)
from tests.harness import PASSWORD, TestServer

OUR_HOST = "localhost"
SYNAPSE_HOST = "127.0.0.1"
PORT_POOL_SIZE = 100  # servers of ours over the whole session (36 in use now)
START_TIMEOUT_S = 180
START_ATTEMPTS = 3


@dataclass
class SynapsePeer:
    server_name: str
    client_url: str
    federation_url: str
    ca: TestCA
    shared_secret: str
    process: synapse.ServerProcess
    version: str
    timings: dict[str, float]
    admin_dsn: str
    db_name: str
    # Reserved loopback sockets, one per server of ours, each admitted by Synapse's whitelist.
    free_sockets: list[socket.socket] = field(default_factory=list)
    _http: aiohttp.ClientSession | None = None
    _admin_token: str | None = None

    def take_socket(self) -> socket.socket:
        """A socket bound to a loopback port whose `localhost:PORT` name Synapse admits, for
        one server of ours to serve on. Handing over the bound socket (rather than closing
        it for the server to bind again) leaves no window for another process to take it."""
        if not self.free_sockets:
            raise RuntimeError(
                f"all {PORT_POOL_SIZE} server names admitted by Synapse are used; "
                "raise PORT_POOL_SIZE in tests/synapse_peer.py"
            )
        return self.free_sockets.pop(0)

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def register(self, localpart: str | None = None, *, admin: bool = False) -> dict:
        """A new Synapse user through the shared-secret admin API: {user_id, access_token,
        device_id}."""
        localpart = localpart or f"syn{secrets.token_hex(4)}"
        http = await self.http()
        url = self.client_url + "/_synapse/admin/v1/register"
        async with http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            nonce = (await resp.json())["nonce"]
        # HMAC-SHA1 over nonce, user, password and admin flag, NUL-separated (admin API).
        message = "\x00".join((nonce, localpart, PASSWORD, "admin" if admin else "notadmin"))
        mac = hmac.new(self.shared_secret.encode(), message.encode(), hashlib.sha1)
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": PASSWORD,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        async with http.post(url, json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        return answer

    async def client(self, localpart: str | None = None, *, store_path: str = "") -> AsyncClient:
        """A matrix-nio client for a new Synapse user, already logged in; with `store_path`
        it does end-to-end encryption."""
        account = await self.register(localpart)
        config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=bool(store_path))
        client = AsyncClient(
            self.client_url, account["user_id"], config=config, store_path=store_path
        )
        client.restore_login(account["user_id"], account["device_id"], account["access_token"])
        return client

    async def login(self, user_id: str, *, store_path: str = "") -> AsyncClient:
        """Another device for an existing Synapse user (password login)."""
        config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=bool(store_path))
        client = AsyncClient(self.client_url, user_id, config=config, store_path=store_path)
        resp = await client.login(PASSWORD)
        assert isinstance(resp, LoginResponse), resp
        return client

    async def admin_get(self, path: str) -> tuple[int, dict]:
        """GET on Synapse's admin API (/_synapse/admin/...) as an admin user made once."""
        if self._admin_token is None:
            self._admin_token = (await self.register(admin=True))["access_token"]
        http = await self.http()
        headers = {"Authorization": f"Bearer {self._admin_token}"}
        async with http.get(self.client_url + path, headers=headers) as resp:
            return resp.status, await resp.json()

    async def db_fetchval(self, query: str, *args):
        """One value from Synapse's own database (to check what it stored)."""
        conn = await asyncpg.connect(synapse.dsn_with_database(self.admin_dsn, self.db_name))
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    def log_tail(self, lines: int = 60) -> str:
        """The end of Synapse's log, for a failing test's report."""
        try:
            text = (self.process.data_dir / "homeserver.log").read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        for sock in self.free_sockets:
            sock.close()
        self.process.stop()
        await synapse.drop_database(self.admin_dsn, self.db_name)


async def start_synapse(admin_dsn: str, work_dir: Path) -> SynapsePeer:
    """Installs (first time on this machine), configures and starts Synapse; bounded waits.

    Raises synapse.SynapseUnavailable when it is not installed and PyPI is out of reach."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    version = await asyncio.to_thread(synapse.install)
    timings["install_s"] = time.monotonic() - t0

    ca = TestCA(work_dir / "ca", "Synapse interop test CA")
    cert, key = ca.issue(SYNAPSE_HOST)
    free_sockets = [bound_loopback_socket() for _ in range(PORT_POOL_SIZE)]
    our_names = [f"{OUR_HOST}:{s.getsockname()[1]}" for s in free_sockets]
    shared_secret = secrets.token_urlsafe(32)
    t0 = time.monotonic()
    try:
        for attempt in range(START_ATTEMPTS):
            launch = _Launch(admin_dsn, work_dir / f"synapse{attempt}")
            try:
                await launch.start(ca, cert, key, our_names, shared_secret)
                break
            except synapse.SynapseError:
                await launch.abandon()
                # Synapse binds its ports itself, a moment after we picked them free:
                # another process may have taken one meanwhile. Then pick again.
                if attempt + 1 == START_ATTEMPTS or not launch.port_taken():
                    raise
    except BaseException:
        for sock in free_sockets:
            sock.close()
        raise
    timings["start_s"] = time.monotonic() - t0
    return SynapsePeer(
        server_name=launch.server_name,
        client_url=f"http://127.0.0.1:{launch.client_port}",
        federation_url=f"https://127.0.0.1:{launch.fed_port}",
        ca=ca,
        shared_secret=shared_secret,
        process=launch.process,
        version=version,
        timings=timings,
        admin_dsn=admin_dsn,
        db_name=launch.db_name,
        free_sockets=free_sockets,
    )


class _Launch:
    """One attempt at starting Synapse: its ports, database, config and process."""

    def __init__(self, admin_dsn: str, data_dir: Path):
        self.admin_dsn = admin_dsn
        self.data_dir = data_dir
        self.client_port, self.fed_port = _free_ports(2)
        self.server_name = f"{SYNAPSE_HOST}:{self.fed_port}"
        self.db_name = f"synapse_interop_{secrets.token_hex(4)}"
        self.process = synapse.ServerProcess(
            "synapse", data_dir, f"http://127.0.0.1:{self.client_port}/_matrix/client/versions"
        )

    async def start(self, ca: TestCA, cert: Path, key: Path, our_names, shared_secret) -> None:
        dsn = await synapse.recreate_database(self.admin_dsn, self.db_name)
        config_path = synapse.write_config(
            self.data_dir,
            server_name=self.server_name,
            listeners=[
                {
                    "port": self.client_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                },
                {
                    "port": self.fed_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": True,
                    "resources": [{"names": ["federation", "keys"], "compress": False}],
                },
            ],
            database_dsn=dsn,
            log_level="INFO",
            tls_certificate_path=str(cert),
            tls_private_key_path=str(key),
            federation_verify_certificates=True,
            federation_custom_ca_list=[str(ca.ca_path)],
            federation_domain_whitelist=our_names,
            # Synapse refuses loopback destinations by default; ours live there.
            ip_range_whitelist=["127.0.0.1/32", "::1/128"],
            registration_shared_secret=shared_secret,
            bcrypt_rounds=4,  # test accounts: registration and login need not be slow
            enable_registration=False,
            presence={"enabled": True},
            allow_public_rooms_over_federation=True,
            # Synapse publishes rooms in its directory for admins only unless told otherwise.
            room_list_publication_rules=[{"action": "allow"}],
            # Servers of ours come and go within a session: give up on one that does not
            # answer after a couple of quick retries, rather than retrying for minutes.
            federation={
                "max_long_retries": 2,
                "max_long_retry_delay": "1s",
                "max_short_retries": 1,
            },
        )
        await asyncio.to_thread(synapse.generate_keys, config_path)
        # Started from this (the main) thread, so that it dies with the test run.
        self.process.spawn(
            synapse.synapse_command(config_path), self.data_dir, die_with_parent=True
        )
        await self.process.wait_ready(START_TIMEOUT_S)

    def port_taken(self) -> bool:
        logs = (self.process.log_path, self.data_dir / "homeserver.log")
        return any(
            "Address already in use" in p.read_text(errors="replace") for p in logs if p.exists()
        )

    async def abandon(self) -> None:
        self.process.stop()
        await synapse.drop_database(self.admin_dsn, self.db_name)


def _free_ports(count: int) -> list[int]:
    """Loopback ports free right now (for Synapse to bind: it cannot take a socket)."""
    socks = [bound_loopback_socket() for _ in range(count)]
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


async def start_our_server(make_server, peer: SynapsePeer, **extra) -> TestServer:
    """A federating server of ours named localhost:PORT that admits Synapse (and only it),
    exchanging presence with it (as Synapse's peer config does; ours keeps it local by
    default)."""
    config = {**FEDERATED_PRESENCE, **extra.pop("config", {})}
    return await start_federating_server(
        make_server,
        peer.ca,
        OUR_HOST,
        [peer.server_name],
        sock=peer.take_socket(),
        config=config,
        **extra,
    )
