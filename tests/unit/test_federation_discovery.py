"""Server name resolution (spec: "Resolving server names") with fake DNS and well-known."""

from __future__ import annotations

import pytest

from federation.discovery import ResolvedServer, ServerResolver, is_public_address


def make_resolver(well_known=None, srv=None, overrides=None):
    calls = {"well_known": 0}

    async def fetch_well_known(host):
        calls["well_known"] += 1
        answer = (well_known or {}).get(host)
        if isinstance(answer, Exception):
            raise answer
        return answer, 3600

    async def srv_lookup(name):
        return (srv or {}).get(name, [])

    return ServerResolver(fetch_well_known, srv_lookup, overrides), calls


async def test_ip_literals_and_explicit_ports_skip_well_known():
    resolver, calls = make_resolver(well_known={"1.2.3.4": "nope"})
    assert await resolver.resolve("1.2.3.4") == ResolvedServer(
        "1.2.3.4", "1.2.3.4", (("1.2.3.4", 8448),)
    )
    assert await resolver.resolve("[::1]:8449") == ResolvedServer(
        "[::1]:8449", "::1", (("[::1]", 8449),)
    )
    got = await resolver.resolve("hs.example.org:1234")
    assert got == ResolvedServer(
        "hs.example.org:1234", "hs.example.org", (("hs.example.org", 1234),)
    )
    assert calls["well_known"] == 0


async def test_well_known_delegation_with_port():
    resolver, _ = make_resolver(well_known={"example.org": "fed.example.org:443"})
    got = await resolver.resolve("example.org")
    assert got == ResolvedServer(
        "fed.example.org:443", "fed.example.org", (("fed.example.org", 443),)
    )


async def test_well_known_delegation_then_srv_of_the_delegated_name():
    resolver, _ = make_resolver(
        well_known={"example.org": "fed.example.org"},
        srv={"_matrix-fed._tcp.fed.example.org": [("node1.example.org", 8443)]},
    )
    got = await resolver.resolve("example.org")
    # Host header and certificate are the delegated name, not the SRV target.
    assert got == ResolvedServer(
        "fed.example.org", "fed.example.org", (("node1.example.org", 8443),)
    )


async def test_srv_then_legacy_srv_then_8448():
    resolver, _ = make_resolver(
        srv={
            "_matrix-fed._tcp.a.org": [("t.a.org", 1)],
            "_matrix._tcp.b.org": [("t.b.org", 2)],
        }
    )
    assert (await resolver.resolve("a.org")).targets == (("t.a.org", 1),)
    assert (await resolver.resolve("b.org")).targets == (("t.b.org", 2),)
    assert await resolver.resolve("c.org") == ResolvedServer("c.org", "c.org", (("c.org", 8448),))


async def test_well_known_answers_and_failures_are_cached():
    resolver, calls = make_resolver(well_known={"x.org": RuntimeError("down")})
    await resolver.resolve("x.org")
    await resolver.resolve("x.org")
    assert calls["well_known"] == 1


async def test_invalid_names_are_rejected():
    from federation.discovery import ResolutionError

    resolver, _ = make_resolver()
    for bad in ("", "a b", "x.org:port", "x.org/path"):
        with pytest.raises(ResolutionError):
            await resolver.resolve(bad)


async def test_overrides_come_before_dns():
    resolver, _ = make_resolver(overrides={"HS1.test.local": "127.0.0.1"})
    assert await resolver.addresses("hs1.test.local", 99) == [("127.0.0.1", 99)]
    assert await resolver.addresses("10.0.0.1", 5) == [("10.0.0.1", 5)]


@pytest.mark.parametrize(
    "ip,public",
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.1.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_private_addresses(ip, public):
    assert is_public_address(ip) is public
