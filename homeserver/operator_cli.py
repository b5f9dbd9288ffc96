"""The operator's commands beside `run`: check-config, migrate, make-admin, register-user.

Each answers bad input with one line on stderr and exit code 2 (raised as ConfigError or
CommandError and printed by homeserver.cli.main), as `run` does for a bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import hmac
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg

from homeserver.config import Config, ConfigError, load_config
from homeserver.keys import load_signing_key
from storage.accounts import AccountStore
from storage.database import Database, apply_migrations
from storage.embedded import EmbeddedPostgres


class CommandError(Exception):
    """Bad input to a command (not the configuration): one line, exit code 2."""


def check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    load_signing_key(config.signing_key_path)
    fed = config.federation
    if fed.listener is not None and fed.tls_certificate and fed.tls_private_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                fed.tls_certificate, fed.tls_private_key
            )
        except (OSError, ssl.SSLError) as e:
            raise ConfigError("federation.tls_certificate", f"cannot load: {e}") from None
    database = "embedded PostgreSQL" if config.database.dsn is None else "database.dsn"
    print(
        f"config OK: {config.server_name}, client API on {config.client_listener.host}:"
        f"{config.client_listener.port}, {database}, {len(config.app_services)} app services"
    )
    return 0


def audit_sovereignty(args: argparse.Namespace) -> int:
    """Prints what the config lets the server contact, then scans the database for
    plaintext in encrypted rooms; exit code 1 when some is found."""
    from homeserver.sovereignty import outbound_destinations, plaintext_in_encrypted_rooms

    config = load_config(args.config)
    print("outbound destinations the configuration permits:")
    for what, where in outbound_destinations(config):
        print(f"  {what}: {where}")

    async def scan() -> list[tuple[str, str, int]]:
        async with _dsn(config) as dsn:
            conn = await _connect(dsn)
            try:
                return await plaintext_in_encrypted_rooms(conn)
            finally:
                await conn.close()

    found = asyncio.run(scan())
    if not found:
        print("plaintext in encrypted rooms: none")
        return 0
    print("plaintext in encrypted rooms (room, event type, events):")
    for room_id, etype, count in found:
        print(f"  {room_id} {etype} {count}")
    return 1


@asynccontextmanager
async def _dsn(config: Config) -> AsyncIterator[str]:
    """The configured database's DSN; the embedded PostgreSQL is started for the command,
    or joined when a running server already holds it."""
    if config.database.dsn is not None:
        yield config.database.dsn
        return
    embedded = EmbeddedPostgres(config.data_dir)
    try:
        dsn = await asyncio.to_thread(embedded.start)
    except Exception as e:
        raise ConfigError("database", f"embedded PostgreSQL failed to start: {e}") from None
    try:
        yield dsn
    finally:
        await asyncio.to_thread(embedded.stop)


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=30)
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        raise ConfigError("database.dsn", f"cannot connect to the database: {e}") from None


def migrate(args: argparse.Namespace) -> int:
    """Applies the migrations without serving (the server also applies them at start)."""
    config = load_config(args.config)

    async def go() -> list[str]:
        async with _dsn(config) as dsn:
            conn = await _connect(dsn)
            try:
                return await apply_migrations(conn)
            finally:
                await conn.close()

    applied = asyncio.run(go())
    for name in applied:
        print(f"applied {name}")
    print(f"{len(applied)} migrations applied; the schema is current")
    return 0


def make_admin(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    user_id = _user_id(args.user, config.server_name)

    async def go() -> bool:
        async with _dsn(config) as dsn:
            await (await _connect(dsn)).close()  # a clear error for a database that is down
            db = Database(dsn, min_size=1, max_size=1)
            await db.open()
            try:
                return await AccountStore(db).set_admin(user_id, not args.revoke)
            finally:
                await db.close()

    if not asyncio.run(go()):
        raise CommandError(f"no such user: {user_id}")
    print(f"{user_id} is {'no longer ' if args.revoke else ''}a server admin")
    return 0


def _user_id(user: str, server_name: str) -> str:
    if user.startswith("@"):
        if not user.endswith(":" + server_name):
            raise CommandError(f"{user} is not a user of {server_name}")
        return user
    return f"@{user}:{server_name}"


def register_user(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    config = load_config(args.config)
    secret = config.registration.shared_secret
    if not secret:
        raise ConfigError(
            "registration.shared_secret", "is not set: shared-secret registration is off"
        )
    interactive = sys.stdin.isatty()
    user = args.user or (ask("New user localpart: ").strip() if interactive else "")
    if not user:
        raise CommandError("a user name is needed (--user)")
    password = args.password
    if password is None:
        if not interactive:
            raise CommandError("a password is needed (--password, or run interactively)")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            raise CommandError("the passwords do not match")
    admin = args.admin
    if admin is None:
        admin = interactive and ask("Make admin [no]: ").strip().lower() in ("y", "yes")
    url = (args.url or config.base_url).rstrip("/") + "/_synapse/admin/v1/register"
    body = asyncio.run(_register(url, secret, user, password, admin))
    print(f"registered {body['user_id']}{' (admin)' if admin else ''}")
    return 0


async def _register(url: str, secret: str, user: str, password: str, admin: bool) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            async with http.get(url) as resp:
                nonce = (await _answer(resp))["nonce"]
            mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
            mac.update(b"\x00".join([nonce.encode(), user.encode(), password.encode()]))
            mac.update(b"\x00admin" if admin else b"\x00notadmin")
            payload = {
                "nonce": nonce,
                "username": user,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            async with http.post(url, json=payload) as resp:
                return await _answer(resp)
        except aiohttp.ClientError as e:
            raise CommandError(f"cannot reach the server at {url}: {e}") from None


async def _answer(resp: aiohttp.ClientResponse) -> dict:
    try:
        body = await resp.json(content_type=None)
    except ValueError:
        body = None
    if resp.status != 200 or not isinstance(body, dict):
        if isinstance(body, dict) and "errcode" in body:
            raise CommandError(f"{body['errcode']}: {body.get('error', '')}")
        raise CommandError(f"the server answered {resp.status}")
    return body
