"""The federation config section and generate-config's federation flags."""

from __future__ import annotations

import pytest
import yaml

from homeserver.cli import main
from homeserver.config import ConfigError, load_config, parse_config

BASE = {"server_name": "a.org", "data_dir": "d", "listeners": {"client": "127.0.0.1:8008"}}


def test_defaults_federate_with_nobody(tmp_path):
    config = parse_config(BASE, tmp_path)
    assert config.federation.allowed_servers == ()
    assert config.federation.listener is None
    assert config.federation.verify_tls is True
    assert config.federation.allow_private_addresses is False


@pytest.mark.parametrize(
    "section,key",
    [
        ({"allowed_servers": "a.org"}, "federation.allowed_servers"),
        ({"allowed_servers": [1]}, "federation.allowed_servers"),
        ({"listen": "0.0.0.0:8448"}, "federation.listen"),  # no certificate
        ({"resolve_overrides": {"a": 1}}, "federation.resolve_overrides"),
        (
            {"trusted_key_servers": [{"server_name": "n.org"}]},
            "federation.trusted_key_servers[0].verify_keys",
        ),
        ({"request_timeout_s": 0}, "federation.request_timeout_s"),
        ({"verify_tls": "no"}, "federation.verify_tls"),
    ],
)
def test_bad_federation_config_names_the_key(tmp_path, section, key):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "federation": section}, tmp_path)
    assert err.value.key == key


def test_generate_config_with_federation_flags(tmp_path):
    out = tmp_path / "hs.yaml"
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    code = main(
        [
            "generate-config",
            "--server-name", "hs1.example.gouv.fr",
            "--data-dir", str(tmp_path / "data"),
            "--listen", "127.0.0.1:8008",
            "--federation-listen", "127.0.0.1:8448",
            "--tls-cert", str(tmp_path / "c.pem"),
            "--tls-key", str(tmp_path / "k.pem"),
            "--ca-bundle", str(tmp_path / "ca.pem"),
            "--allow-server", "hs2.example.gouv.fr",
            "--allow-server", "*.interieur.gouv.fr",
            "--output", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    config = load_config(out)
    fed = config.federation
    assert fed.allowed_servers == ("hs2.example.gouv.fr", "*.interieur.gouv.fr")
    assert (fed.listener.host, fed.listener.port) == ("127.0.0.1", 8448)
    assert fed.tls_certificate == tmp_path / "c.pem"
    assert fed.ca_bundle == tmp_path / "ca.pem"
    assert yaml.safe_load(out.read_text())["federation"]["listen"] == "127.0.0.1:8448"


def test_generate_config_refuses_a_listener_without_certificate(tmp_path, capsys):
    code = main(
        [
            "generate-config", "--server-name", "a.org", "--data-dir", str(tmp_path / "d"),
            "--listen", "127.0.0.1:8008", "--federation-listen", "127.0.0.1:8448",
            "--output", str(tmp_path / "hs.yaml"),
        ]
    )  # fmt: skip
    assert code == 2
    assert not (tmp_path / "hs.yaml").exists()
