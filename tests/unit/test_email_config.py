"""The e-mail, account_validity and identity config sections: off by default, and every
mistake a ConfigError naming the key."""

from pathlib import Path

import pytest

from homeserver.config import ConfigError, parse_config

BASE = {"server_name": "hs.example", "data_dir": "/tmp/x", "listeners": {"client": "127.0.0.1:1"}}
EMAIL = {"enabled": True, "from": "HS <noreply@hs.example>"}


def parse(**sections):
    return parse_config({**BASE, **sections}, Path("/tmp"))


def test_everything_is_off_by_default():
    config = parse()
    assert not config.email.enabled
    assert not config.account_validity.enabled
    assert config.identity.domain_map == () and config.identity.default_server is None


def test_valid_sections():
    config = parse(
        email={**EMAIL, "smtp_tls": "tls", "token_lifetime": "2h", "allowed_domains": ["A.fr"]},
        account_validity={
            "enabled": True,
            "period": "6w",
            "renew_at": 86400,
            "deactivate_expired_after": "30d",
        },
        identity={"domain_map": {"A.fr": "hs.example"}, "default_server": "ext.example"},
    )
    assert config.email.smtp_port == 465 and config.email.token_lifetime_s == 7200
    assert config.email.notif_from == EMAIL["from"] and config.email.allowed_domains == ("a.fr",)
    assert config.account_validity.period_s == 42 * 86400
    assert config.account_validity.deactivate_expired_after_s == 30 * 86400
    assert config.identity.server_for_domain("a.fr") == "hs.example"
    assert config.identity.server_for_domain("b.fr") == "ext.example"


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"email": {"enabled": True}}, "email.from"),
        ({"email": {**EMAIL, "from": "not an address"}}, "email.from"),
        ({"email": {**EMAIL, "smtp_tls": "ssl"}}, "email.smtp_tls"),
        ({"email": {**EMAIL, "smtp_port": 70000}}, "email.smtp_port"),
        ({"email": {**EMAIL, "smtp_user": "u"}}, "email.smtp_user"),
        ({"email": {**EMAIL, "token_lifetime": "soon"}}, "email.token_lifetime"),
        ({"email": {**EMAIL, "token_lifetime": 0}}, "email.token_lifetime"),
        ({"email": {**EMAIL, "allowed_domains": ["not a domain"]}}, "email.allowed_domains"),
        ({"email": {**EMAIL, "rate_limits": {"per_ip": {"burst": 0}}}}, "email.rate_limits.per_ip"),
        ({"email": "yes"}, "email"),
        ({"email": EMAIL, "account_validity": {"enabled": True}}, "account_validity.period"),
        (
            {
                "email": EMAIL,
                "account_validity": {"enabled": True, "period": "1d", "renew_at": "2d"},
            },
            "account_validity.renew_at",
        ),
        ({"account_validity": {"enabled": True, "period": "30d"}}, "account_validity.enabled"),
        (
            {"email": EMAIL, "account_validity": {"period": "30d", "renew_email_subject": "%(x)s"}},
            "account_validity.renew_email_subject",
        ),
        ({"identity": {"domain_map": {"a.fr": "bad server!"}}}, "identity.domain_map.a.fr"),
        ({"identity": {"domain_map": {"not a domain": "hs"}}}, "identity.domain_map"),
        ({"identity": {"default_server": "bad server!"}}, "identity.default_server"),
    ],
)
def test_mistakes_name_the_key(sections, key):
    with pytest.raises(ConfigError) as err:
        parse(**sections)
    assert err.value.key == key
