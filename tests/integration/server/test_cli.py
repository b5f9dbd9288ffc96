"""`homeserver generate-config` and `homeserver run` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import yaml

from homeserver.config import parse_config

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _homeserver(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "homeserver",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _run_to_end(*args: str) -> tuple[int, str]:
    proc = await _homeserver(*args)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, err.decode()


async def _generate(tmp_path: Path, port: int, *extra: str) -> Path:
    out = tmp_path / "homeserver.yaml"
    code, err = await _run_to_end(
        "generate-config",
        "--server-name",
        "cli.test",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        f"127.0.0.1:{port}",
        "--open-registration",
        "--no-rate-limits",
        "--output",
        str(out),
        *extra,
    )
    assert code == 0, err
    return out


async def _wait_ready(url: str, proc) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError("server exited early")
            try:
                async with http.get(url + "/_matrix/client/versions") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


async def test_generate_config_and_run_until_sigterm(tmp_path, fresh_dsn):
    port = _free_port()
    config_path = await _generate(tmp_path, port, "--database-dsn", fresh_dsn)
    config = parse_config(yaml.safe_load(config_path.read_text()), tmp_path)
    assert config.server_name == "cli.test" and config.registration.open
    key_file = tmp_path / "data" / "signing.key"
    assert key_file.read_text().startswith("ed25519 ")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"

    proc = await _homeserver("run", "-c", str(config_path))
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_embedded_postgres_when_no_database_configured(tmp_path):
    port = _free_port()
    config_path = await _generate(tmp_path, port)
    proc = await _homeserver("run", "-c", str(config_path))
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", proc)
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
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
    code, err = await _run_to_end("run", "-c", str(bad))
    assert code == 2 and "server_name" in _one_line(err)

    bad.write_text("server_name: x\ndata_dir: ./d\nlisteners: {client: '127.0.0.1:99999'}\n")
    code, err = await _run_to_end("run", "-c", str(bad))
    assert code == 2 and "listeners.client" in _one_line(err)

    code, err = await _run_to_end("run", "-c", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config" in _one_line(err)


async def test_runtime_start_errors_are_one_line(tmp_path, fresh_dsn):
    port = _free_port()
    config_path = await _generate(tmp_path, port, "--database-dsn", fresh_dsn)
    data = yaml.safe_load(config_path.read_text())

    # A port in use.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        code, err = await _run_to_end("run", "-c", str(config_path))
    assert code == 2 and "listeners.client" in _one_line(_errors_only(err))

    # An unreachable database.
    data["database"] = {"dsn": f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing"}
    config_path.write_text(yaml.safe_dump(data))
    code, err = await _run_to_end("run", "-c", str(config_path))
    assert code == 2 and "database.dsn" in _one_line(_errors_only(err))

    # An unreadable signing key.
    data["database"] = {"dsn": fresh_dsn}
    data["signing_key_path"] = str(tmp_path / "no-such.key")
    config_path.write_text(yaml.safe_dump(data))
    code, err = await _run_to_end("run", "-c", str(config_path))
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
