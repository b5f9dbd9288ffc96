"""Bad registration files stop the server at start-up with one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from homeserver.config import ConfigError, parse_config
from tests.integration.appservice.helpers import write_registration

ROOT = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, paths: list[str]) -> dict:
    return {
        "server_name": "test.local",
        "data_dir": str(tmp_path / "data"),
        "listeners": {"client": "127.0.0.1:1"},
        "app_services": paths,
    }


def _edit(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for p in parents:
            node = node[p] if not p.isdigit() else node[int(p)]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"as_token": None}, ").as_token", "is required"),
        ({"url": "ftp://x"}, ").url", "http(s)"),
        ({"namespaces__users": [{"regex": "@a(", "exclusive": True}]}, "users[0].regex", "valid"),
        ({"namespaces__users": [{"regex": "@a.*"}]}, "users[0].exclusive", "required"),
        ({"namespaces": None}, ").namespaces", "required"),
        ({"sender_localpart": "@bot:test.local"}, ").sender_localpart", "localpart"),
        ({"rate_limited": "no"}, ").rate_limited", "true or false"),
    ],
)
def test_bad_registration_is_named(tmp_path, change, key, reason):
    reg = write_registration(tmp_path, "a", "_a_")
    _edit(reg.path, **change)
    with pytest.raises(ConfigError) as err:
        parse_config(_config(tmp_path, [str(reg.path)]), tmp_path)
    assert key in err.value.key and reason in err.value.reason, str(err.value)


def test_clashes_between_registrations_are_named(tmp_path):
    a = write_registration(tmp_path, "a", "_a_")
    b = write_registration(tmp_path, "b", "_b_")
    paths = [str(a.path), str(b.path)]
    parse_config(_config(tmp_path, paths), tmp_path)  # fine as they are

    for attr in ("as_token", "hs_token"):
        b2 = write_registration(tmp_path, "b", "_b_", **{attr: a.data[attr]})
        with pytest.raises(ConfigError) as err:
            parse_config(_config(tmp_path, [str(a.path), str(b2.path)]), tmp_path)
        assert err.value.key.endswith(f".{attr}"), str(err.value)

    (tmp_path / "dup").mkdir()
    dup = write_registration(tmp_path / "dup", "a", "_c_")
    with pytest.raises(ConfigError) as err:
        parse_config(_config(tmp_path, [str(a.path), str(dup.path)]), tmp_path)
    assert err.value.key.endswith(".id")

    # `@_a_bridge_.*` lies inside `@_a_.*`: two owners for one user ID.
    overlap = write_registration(tmp_path, "c", "_a_bridge_")
    with pytest.raises(ConfigError) as err:
        parse_config(_config(tmp_path, [str(a.path), str(overlap.path)]), tmp_path)
    assert err.value.key.endswith("namespaces.users") and "overlaps" in err.value.reason


def test_the_server_refuses_to_start_with_one_line(tmp_path):
    reg = write_registration(tmp_path, "a", "_a_")
    _edit(reg.path, hs_token=None)
    config = tmp_path / "homeserver.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, [str(reg.path)])))
    proc = subprocess.run(
        [sys.executable, "-m", "homeserver", "run", "-c", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "hs_token" in line]
    assert len(errors) == 1 and "is required" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
