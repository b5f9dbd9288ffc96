"""CAS pieces that need no server: the user-name mapping, the login token in the client's
URL, the validation XML, the configuration and the sovereignty audit's destinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.accounts.cas import CasError, localpart_for, parse_validation, with_login_token
from homeserver.config import ConfigError, parse_config
from homeserver.sovereignty import outbound_destinations

NS = "http://www.yale.edu/tp/cas"


def test_localpart_mapping():
    assert localpart_for("cas_user!") == "cas_user=21"
    assert localpart_for("Jean.Dupont") == "jean.dupont"
    assert localpart_for("a=b") == "a=3db"
    assert localpart_for("_admin") == "=5fadmin"
    assert localpart_for("élise") == "=c3=a9lise"
    assert localpart_for("x y/z+w-v") == "x=20y/z+w-v"


def test_login_token_replaces_any_in_the_url():
    assert with_login_token("https://c/?a=1", "T") == "https://c/?a=1&loginToken=T"
    assert with_login_token("https://c/?loginToken=old&b=2", "T") == "https://c/?b=2&loginToken=T"
    assert with_login_token("element://sso", "T") == "element://sso?loginToken=T"


def test_parse_validation():
    body = (
        f"<cas:serviceResponse xmlns:cas='{NS}'><cas:authenticationSuccess>"
        "<cas:user> jdupont </cas:user><cas:attributes><cas:mail>a@b</cas:mail>"
        "<cas:role>x</cas:role><cas:role>y</cas:role></cas:attributes>"
        "</cas:authenticationSuccess></cas:serviceResponse>"
    ).encode()
    assert parse_validation(body) == ("jdupont", {"mail": ["a@b"], "role": ["x", "y"]})
    failure = (
        f"<cas:serviceResponse xmlns:cas='{NS}'><cas:authenticationFailure code='INVALID_TICKET'"
        "/></cas:serviceResponse>"
    ).encode()
    for bad, status in (
        (failure, 401),
        (b"not xml", 502),
        (b"<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>", 502),
        (
            f"<cas:serviceResponse xmlns:cas='{NS}'><cas:authenticationSuccess/>"
            "</cas:serviceResponse>".encode(),
            502,
        ),
    ):
        with pytest.raises(CasError) as err:
            parse_validation(bad)
        assert err.value.status == status


def _config(tmp_path: Path, **sections):
    raw = {
        "server_name": "example.org",
        "data_dir": str(tmp_path),
        "listeners": {"client": "127.0.0.1:8008"},
        **sections,
    }
    return parse_config(raw, tmp_path)


def test_config_off_by_default_and_checked(tmp_path):
    config = _config(tmp_path)
    assert not config.cas.enabled and not config.recaptcha.enabled
    destinations = dict(outbound_destinations(config))
    assert destinations["cas"].startswith("off")
    assert "captcha verifier" not in destinations

    for sections, key in (
        ({"cas": {"enabled": True}}, "cas.server_url"),
        ({"cas": {"enabled": True, "server_url": "cas.example.org"}}, "cas.server_url"),
        ({"cas": {"required_attributes": {"a": 1}}}, "cas.required_attributes"),
        ({"recaptcha": {"enabled": True, "siteverify_api": "https://v/"}}, "recaptcha.public_key"),
        (
            {"recaptcha": {"enabled": True, "public_key": "p", "private_key": "k"}},
            "recaptcha.siteverify_api",
        ),
    ):
        with pytest.raises(ConfigError) as err:
            _config(tmp_path, **sections)
        assert key in str(err.value)

    config = _config(
        tmp_path,
        cas={"enabled": True, "server_url": "https://cas.example.org/cas/"},
        recaptcha={
            "enabled": True,
            "public_key": "p",
            "private_key": "k",
            "siteverify_api": "https://captcha.example.org/siteverify",
        },
    )
    assert config.cas.server_url == "https://cas.example.org/cas"
    destinations = outbound_destinations(config)
    assert ("cas server", "https://cas.example.org/cas") in destinations
    assert ("captcha verifier", "https://captcha.example.org/siteverify") in destinations
