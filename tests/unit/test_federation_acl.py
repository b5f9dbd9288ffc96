"""m.room.server_acl evaluation, in the order the spec gives."""

from __future__ import annotations

import pytest

from federation.acl import server_allowed_by_acl


def test_no_acl_allows_everyone():
    assert server_allowed_by_acl(None, "anyone.example")


@pytest.mark.parametrize(
    ("content", "server", "allowed"),
    [
        ({"allow": ["*"]}, "hs.example", True),
        ({"allow": ["*"], "deny": ["evil.example"]}, "evil.example", False),
        # Ports are never considered.
        ({"allow": ["*"], "deny": ["evil.example"]}, "evil.example:8448", False),
        ({"allow": ["*"], "deny": ["*.evil.example"]}, "sub.evil.example", False),
        ({"allow": ["*"], "deny": ["*.evil.example"]}, "evil.example", True),
        # deny wins over allow
        ({"allow": ["evil.example"], "deny": ["evil.example"]}, "evil.example", False),
        # no allow rule: nobody
        ({"deny": ["evil.example"]}, "good.example", False),
        ({}, "good.example", False),
        ({"allow": ["good.example"]}, "good.example", True),
        ({"allow": ["good.example"]}, "other.example", False),
        ({"allow": ["hs?.example"]}, "hs1.example", True),
        ({"allow": ["hs?.example"]}, "hs10.example", False),
        # IP literals: allowed by default, denied when allow_ip_literals is false.
        ({"allow": ["*"]}, "1.2.3.4:8448", True),
        ({"allow": ["*"], "allow_ip_literals": False}, "1.2.3.4", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "[::1]:8448", False),
        ({"allow": ["*"], "allow_ip_literals": "no"}, "1.2.3.4", True),
        # malformed lists and entries are ignored
        ({"allow": "*"}, "hs.example", False),
        ({"allow": [5, "*"], "deny": [None]}, "hs.example", True),
        ({"allow": ["*"]}, "HS.Example", True),
    ],
)
def test_acl_rules(content, server, allowed):
    assert server_allowed_by_acl(content, server) is allowed
