"""The operator's commands as an operator runs them: check-config, migrate, make-admin and
register-user, each a real `homeserver` process against a real database and server."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import yaml

from homeserver.keys import write_signing_key
from tests.harness import PASSWORD

ROOT = Path(__file__).resolve().parents[3]
ADMIN_ONLY = "/_synapse/admin/v1/registration_tokens"


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "homeserver", *args,
        cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _config(tmp_path: Path, server_name: str, dsn: str, **extra) -> str:
    data_dir = tmp_path / "cli-data"
    if not (data_dir / "signing.key").exists():
        write_signing_key(data_dir / "signing.key")
    raw = {
        "server_name": server_name,
        "data_dir": str(data_dir),
        "listeners": {"client": "127.0.0.1:8008"},
        "database": {"dsn": dsn},
        **extra,
    }
    path = tmp_path / f"cli-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


async def test_check_config_accepts_a_good_file_and_names_the_bad_key(tmp_path, fresh_dsn):
    good = _config(tmp_path, "cli.test", fresh_dsn)
    code, out, err = await _cli("check-config", "-c", good)
    assert code == 0 and out.startswith("config OK: cli.test"), err

    bad = _config(tmp_path, "cli.test", fresh_dsn, rate_limits={"per_user": "fast"})
    code, out, err = await _cli("check-config", "-c", bad)
    assert code == 2 and err.strip().splitlines() == [err.strip()]
    assert err.startswith("config error: rate_limits.per_user")

    keyless = yaml.safe_load(Path(good).read_text())
    keyless["signing_key_path"] = str(tmp_path / "missing.key")
    Path(good).write_text(yaml.safe_dump(keyless))
    code, _, err = await _cli("check-config", "-c", good)
    assert code == 2 and err.startswith("config error: signing_key_path")


async def test_migrate_applies_every_migration_once(tmp_path, pg_admin_dsn):
    name = f"hs_cli_migrate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # The database in the URL's path: the embedded PostgreSQL's DSN names its socket
        # directory in the query, which holds slashes too.
        dsn = urlunsplit(urlsplit(pg_admin_dsn)._replace(path="/" + name))
        config = _config(tmp_path, "cli.test", dsn)
        code, out, err = await _cli("migrate", "-c", config)
        assert code == 0, err
        applied = [line for line in out.splitlines() if line.startswith("applied ")]
        assert applied and applied[0] == "applied 0001_core.sql"
        conn = await asyncpg.connect(dsn)
        try:
            count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()
        assert count == len(applied)
        code, out, err = await _cli("migrate", "-c", config)
        assert code == 0 and "0 migrations applied" in out, err
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_make_admin_grants_and_revokes(server, tmp_path, fresh_dsn):
    ops = await server.client("ops")
    config = _config(tmp_path, server.server_name, fresh_dsn)
    status, _ = await server.request("GET", ADMIN_ONLY, token=ops.access_token)
    assert status == 403

    code, out, err = await _cli("make-admin", "-c", config, "ops")
    assert code == 0 and ops.user_id in out, err
    status, _ = await server.request("GET", ADMIN_ONLY, token=ops.access_token)
    assert status == 200

    code, _, err = await _cli("make-admin", "-c", config, ops.user_id, "--revoke")
    assert code == 0, err
    status, _ = await server.request("GET", ADMIN_ONLY, token=ops.access_token)
    assert status == 403

    code, _, err = await _cli("make-admin", "-c", config, "nobody")
    assert code == 2 and err.strip() == f"error: no such user: @nobody:{server.server_name}"
    code, _, err = await _cli("make-admin", "-c", config, "@ops:elsewhere.test")
    assert code == 2 and "not a user of" in err


async def test_register_user_through_the_shared_secret(server, tmp_path, fresh_dsn):
    secret = server.hs.config.registration.shared_secret
    config = _config(
        tmp_path, server.server_name, fresh_dsn, registration={"shared_secret": secret}
    )
    url = server.base_url
    code, out, err = await _cli(
        "register-user", "-c", config, "--url", url, "-u", "chief", "-p", PASSWORD, "--admin"
    )
    assert code == 0 and f"@chief:{server.server_name} (admin)" in out, err
    chief = await server.login("chief")
    status, _ = await server.request("GET", ADMIN_ONLY, token=chief.access_token)
    assert status == 200

    # The same name again, no password without a terminal, no shared secret: exit 2.
    code, _, err = await _cli(
        "register-user", "-c", config, "--url", url, "-u", "chief", "-p", PASSWORD
    )
    assert code == 2 and "M_USER_IN_USE" in err
    code, _, err = await _cli("register-user", "-c", config, "--url", url, "-u", "deputy")
    assert code == 2 and "password is needed" in err
    no_secret = _config(tmp_path, server.server_name, fresh_dsn)
    code, _, err = await _cli(
        "register-user", "-c", no_secret, "--url", url, "-u", "deputy", "-p", PASSWORD
    )
    assert code == 2 and err.startswith("config error: registration.shared_secret")
    assert not await server.db.fetchval(
        "SELECT 1 FROM users WHERE user_id = $1", f"@deputy:{server.server_name}"
    )
