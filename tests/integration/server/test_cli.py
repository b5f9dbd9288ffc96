"""`homeserver generate-config` and `homeserver run` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import yaml

from homeserver.config import parse_config
from tests.processes import ROOT, free_port, generate_config, homeserver, run_to_end, wait_ready


async def test_generate_config_and_run_until_sigterm(tmp_path, fresh_dsn):
    port = free_port()
    config_path = await generate_config(tmp_path, port, "--database-dsn", fresh_dsn)
    config = parse_config(yaml.safe_load(config_path.read_text()), tmp_path)
    assert config.server_name == "cli.test" and config.registration.open
    key_file = tmp_path / "data" / "signing.key"
    assert key_file.read_text().startswith("ed25519 ")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"

    proc = await homeserver("run", "-c", str(config_path))
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_embedded_postgres_when_no_database_configured(embedded_pg_dir):
    port = free_port()
    config_path = await generate_config(embedded_pg_dir, port)
    proc = await homeserver("run", "-c", str(config_path))
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        assert (embedded_pg_dir / "data" / "postgres" / "PG_VERSION").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


async def test_config_errors_are_one_line_exit_2(tmp_path, fresh_dsn):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_dir: ./d\nlisteners: {client: '127.0.0.1:8008'}\n")
    code, err = await run_to_end("run", "-c", str(bad))
    assert code == 2 and "server_name" in _one_line(err)

    bad.write_text("server_name: x\ndata_dir: ./d\nlisteners: {client: '127.0.0.1:99999'}\n")
    code, err = await run_to_end("run", "-c", str(bad))
    assert code == 2 and "listeners.client" in _one_line(err)

    code, err = await run_to_end("run", "-c", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config" in _one_line(err)


async def test_runtime_start_errors_are_one_line(tmp_path, fresh_dsn):
    port = free_port()
    config_path = await generate_config(tmp_path, port, "--database-dsn", fresh_dsn)
    data = yaml.safe_load(config_path.read_text())

    # A port in use.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        code, err = await run_to_end("run", "-c", str(config_path))
    assert code == 2 and "listeners.client" in _one_line(_errors_only(err))

    # An unreachable database.
    data["database"] = {"dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"}
    config_path.write_text(yaml.safe_dump(data))
    code, err = await run_to_end("run", "-c", str(config_path))
    assert code == 2 and "database.dsn" in _one_line(_errors_only(err))

    # An unreadable signing key.
    data["database"] = {"dsn": fresh_dsn}
    data["signing_key_path"] = str(tmp_path / "no-such.key")
    config_path.write_text(yaml.safe_dump(data))
    code, err = await run_to_end("run", "-c", str(config_path))
    assert code == 2 and "signing_key_path" in _one_line(_errors_only(err))


def _errors_only(err: str) -> str:
    """The run logs INFO lines to stderr before failing; the error is the config error line."""
    assert "Traceback" not in err, err
    return "\n".join(line for line in err.splitlines() if line.startswith("config error:"))


def test_example_config_is_valid(tmp_path):
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    config = parse_config(data, tmp_path)
    assert config.server_name == "example.gouv.fr"
    assert os.fspath(config.data_dir).endswith("data")
