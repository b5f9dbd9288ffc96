"""Two federating servers of ours (TLS from a test CA) and a third, non-admitted one."""

from __future__ import annotations

import time

import aiohttp
import pytest
from aiohttp import web
from nio import ProfileGetResponse
from signedjson.key import (
    decode_verify_key_bytes,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import sign_json, verify_signed_json
from unpaddedbase64 import decode_base64
from yarl import URL

from federation.client import FederationError
from federation.request_auth import authorization_header
from homeserver.keys import load_signing_key, new_signing_key_line
from tests.federation_ca import TestCA, start_federating_server
from tests.integration.federation.fake_remote import server_admitting, start_fake_federation_server


@pytest.fixture
async def trio(make_server, ca):
    """hs1 and hs2 admit each other; hs3 is admitted by nobody (and admits both)."""
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["*.test.local"])
    hs3 = await start_federating_server(
        make_server, ca, "hs3.test.local", ["hs1.test.local", "hs2.test.local"]
    )
    return hs1, hs2, hs3


def _verify_self_signed(response: dict, server_name: str) -> None:
    for key_id, entry in response["verify_keys"].items():
        key = decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
        verify_signed_json(response, server_name, key)


async def _raw_get(server, path: str, ca: TestCA, headers=None) -> tuple[int, dict]:
    """Raw HTTPS to a federation listener, verifying its certificate against the test CA."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    host = server.server_name.split(":")[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(
            URL(server.federation_url.rstrip("/") + path, encoded=True),  # signed bytes as-is
            headers=headers or {},
            ssl=ctx,
            server_hostname=host,
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_each_server_fetches_and_caches_the_others_keys(trio):
    hs1, hs2, _ = trio
    for me, other in ((hs1, hs2), (hs2, hs1)):
        key_id = other.hs.federation.server_keys.key_id
        key = await me.hs.federation.keys.verify_key(other.server_name, key_id, at_ts=0)
        assert key is not None
        assert key.encode() == other.hs.federation.server_keys.verify_key.encode()
        cached = await me.db.fetchval(
            "SELECT count(*) FROM federation_remote_keys WHERE server_name = $1",
            other.server_name,
        )
        assert cached == 1


async def test_server_keys_endpoint_is_signed_and_lists_old_keys(trio, ca):
    hs1, _, _ = trio
    # A key the server signed with before a rotation (as if the operator had rotated).
    await hs1.hs.federation.store.record_current_key("ed25519:a_old", "b2xka2V5", 1)
    await hs1.hs.federation.server_keys.start()  # the real key becomes current again
    status, body = await _raw_get(hs1, "/_matrix/key/v2/server", ca)
    assert status == 200
    assert body["server_name"] == hs1.server_name
    assert body["valid_until_ts"] > 0
    assert "ed25519:a_old" in body["old_verify_keys"]
    assert body["old_verify_keys"]["ed25519:a_old"]["expired_ts"] > 1
    assert hs1.hs.federation.server_keys.key_id in body["verify_keys"]
    _verify_self_signed(body, hs1.server_name)


def load_signing_key_from_line(line: str):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k"
        path.write_text(line)
        return load_signing_key(path)


async def test_notary_serves_a_remote_servers_keys_countersigned(trio, ca):
    hs1, hs2, _ = trio
    status, body = await _raw_get(hs1, f"/_matrix/key/v2/query/{hs2.server_name}", ca)
    assert status == 200
    [response] = body["server_keys"]
    assert response["server_name"] == hs2.server_name
    _verify_self_signed(response, hs2.server_name)
    notary_key = hs1.hs.federation.server_keys.verify_key
    verify_signed_json(response, hs1.server_name, notary_key)


async def test_legacy_key_id_paths(trio, ca):
    """The pre-v1.6 forms SyTest's federation client uses: /server/{keyId} answers the whole
    signed response; /query/{server}/{keyId} the responses that hold that key, none else."""
    hs1, hs2, _ = trio
    key_id = hs1.hs.federation.server_keys.key_id
    status, body = await _raw_get(hs1, f"/_matrix/key/v2/server/{key_id}", ca)
    assert status == 200
    assert key_id in body["verify_keys"]
    _verify_self_signed(body, hs1.server_name)

    hs2_key = hs2.hs.federation.server_keys.key_id
    status, body = await _raw_get(hs1, f"/_matrix/key/v2/query/{hs2.server_name}/{hs2_key}", ca)
    assert status == 200
    [response] = body["server_keys"]
    assert hs2_key in response["verify_keys"]
    verify_signed_json(response, hs1.server_name, hs1.hs.federation.server_keys.verify_key)

    status, body = await _raw_get(
        hs1, f"/_matrix/key/v2/query/{hs2.server_name}/ed25519:nosuchkey", ca
    )
    assert status == 200
    assert body["server_keys"] == []


async def test_keys_fetched_through_a_trusted_notary(make_server, ca):
    """hs3 cannot reach hs2 directly (wrong CA bundle) but trusts hs1 as a notary."""
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["*.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["*.test.local"])
    other_ca = TestCA(ca.directory.parent / "other-ca", "Some other CA")
    notary = {
        "server_name": hs1.server_name,
        "verify_keys": {
            hs1.hs.federation.server_keys.key_id: hs1.hs.federation.server_keys.verify_key_b64
        },
    }
    hs3 = await start_federating_server(
        make_server, ca, "hs3.test.local", ["*.test.local"], trusted_key_servers=[notary]
    )
    fed3 = hs3.hs.federation
    # Direct fetches to hs2 fail certificate verification against another CA's bundle...
    fed3.client._ssl = __import__("ssl").create_default_context(cafile=str(other_ca.ca_path))
    with pytest.raises(FederationError):
        await fed3.client.get_json(hs2.server_name, "/_matrix/key/v2/server")
    # ... and the notary is reached through a client that trusts the real CA.
    real = hs3.hs.federation.client.__class__(
        hs3.server_name, hs3.hs.signing_key, fed3.policy, hs3.hs.config.federation
    )
    fed3.keys.client = _NotaryOnly(real, hs1.server_name)
    try:
        key = await fed3.keys.verify_key_for_request(
            hs2.server_name, hs2.hs.federation.server_keys.key_id
        )
    finally:
        await real.close()
    assert key is not None
    assert key.encode() == hs2.hs.federation.server_keys.verify_key.encode()


class _NotaryOnly:
    """A client that reaches only the notary: direct key fetches fail."""

    def __init__(self, client, notary: str):
        self.client, self.notary = client, notary

    async def get_json(self, destination, path, query=None):
        raise FederationError("unreachable")

    async def post_json(self, destination, path, content, query=None):
        assert destination == self.notary
        return await self.client.post_json(destination, path, content)


async def test_profile_query_both_ways(trio):
    hs1, hs2, _ = trio
    alice = await hs1.client("alice")
    assert (await alice.set_displayname("Alice A")).__class__.__name__.endswith("Response")
    bob = await hs2.client("bob")
    await bob.set_displayname("Bob B")
    got = await hs2.hs.federation.client.get_json(
        hs1.server_name,
        "/_matrix/federation/v1/query/profile",
        query={"user_id": alice.user_id},
    )
    assert got == {"displayname": "Alice A"}
    got = await hs1.hs.federation.client.get_json(
        hs2.server_name,
        "/_matrix/federation/v1/query/profile",
        query={"user_id": bob.user_id, "field": "displayname"},
    )
    assert got == {"displayname": "Bob B"}
    # A user that does not exist is a 404 M_NOT_FOUND over federation.
    with pytest.raises(FederationError) as err:
        await hs1.hs.federation.client.get_json(
            hs2.server_name,
            "/_matrix/federation/v1/query/profile",
            query={"user_id": f"@nobody:{hs2.server_name}"},
        )
    assert (err.value.status, err.value.errcode) == (404, "M_NOT_FOUND")
    assert isinstance(await alice.get_profile(alice.user_id), ProfileGetResponse)


async def test_directory_query(trio):
    hs1, hs2, _ = trio
    await hs1.db.execute(
        "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, 0)",
        f"#lobby:{hs1.server_name}",
        "!room:x",
        f"@a:{hs1.server_name}",
    )
    got = await hs2.hs.federation.client.get_json(
        hs1.server_name,
        "/_matrix/federation/v1/query/directory",
        query={"room_alias": f"#lobby:{hs1.server_name}"},
    )
    assert got == {"room_id": "!room:x", "servers": [hs1.server_name]}


async def _metric(server, direction: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.metrics_url) as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith(f'matrix_federation_refused_requests_total{{direction="{direction}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_non_admitted_server_is_refused_both_ways(trio):
    hs1, _, hs3 = trio
    before = await _metric(hs1, "inbound")
    # hs3 admits hs1, but hs1 does not admit hs3: 403 and counted.
    with pytest.raises(FederationError) as err:
        await hs3.hs.federation.client.get_json(
            hs1.server_name,
            "/_matrix/federation/v1/query/profile",
            query={"user_id": f"@alice:{hs1.server_name}"},
        )
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")
    assert await _metric(hs1, "inbound") == before + 1
    # hs1 refuses to send anything to hs3, before connecting.
    out_before = await _metric(hs1, "outbound")
    with pytest.raises(FederationError) as err:
        await hs1.hs.federation.client.get_json(hs3.server_name, "/_matrix/key/v2/server")
    assert err.value.status is None
    assert await _metric(hs1, "outbound") == out_before + 1
    # Nor does hs1 fetch hs3's keys as a notary.
    remote = await hs1.db.fetchval(
        "SELECT count(*) FROM federation_remote_keys WHERE server_name = $1", hs3.server_name
    )
    assert remote == 0


async def test_missing_and_forged_signatures_are_unauthorized(trio, ca):
    hs1, hs2, _ = trio
    path = f"/_matrix/federation/v1/query/profile?user_id=%40alice%3A{hs1.server_name}"
    status, body = await _raw_get(hs1, path, ca)
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    # Signed by hs2's name with a key that is not hs2's.
    forger = load_signing_key_from_line(new_signing_key_line(hs2.hs.signing_key.version))
    header = authorization_header(forger, hs2.server_name, hs1.server_name, "GET", path)
    status, body = await _raw_get(hs1, path, ca, {"Authorization": header})
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    # A genuine signature over another path does not carry over.
    header = authorization_header(
        hs2.hs.signing_key, hs2.server_name, hs1.server_name, "GET", path + "&field=avatar_url"
    )
    status, body = await _raw_get(hs1, path, ca, {"Authorization": header})
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    # Addressed to another server.
    header = authorization_header(hs2.hs.signing_key, hs2.server_name, "elsewhere", "GET", path)
    status, body = await _raw_get(hs1, path, ca, {"Authorization": header})
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    # The genuine one works.
    header = authorization_header(hs2.hs.signing_key, hs2.server_name, hs1.server_name, "GET", path)
    status, body = await _raw_get(hs1, path, ca, {"Authorization": header})
    assert status in (200, 404), body  # alice may not exist: authentication passed


async def test_version_and_well_known(make_server, ca):
    hs1 = await start_federating_server(
        make_server, ca, "hs1.test.local", [], well_known_server="fed.example.org:443"
    )
    status, body = await _raw_get(hs1, "/_matrix/federation/v1/version", ca)
    assert status == 200 and body["server"]["name"]
    status, body = await _raw_get(hs1, "/.well-known/matrix/server", ca)
    assert (status, body) == (200, {"m.server": "fed.example.org:443"})
    # Also served on the client listener, which usually sits behind port 443.
    status, body = await hs1.request("GET", "/.well-known/matrix/server")
    assert (status, body) == (200, {"m.server": "fed.example.org:443"})


async def test_notary_serves_an_expired_key_when_it_has_nothing_newer(make_server, ca):
    """SyTest 01keys: the origin publishes a key that expired yesterday, then answers
    400. The notary keeps and serves that response (the most recent it holds), whatever
    minimum_valid_until_ts asks, rather than nothing."""
    key = generate_signing_key("old")
    expired = int(time.time() * 1000) - 86_400_000
    answers: list[tuple[int, dict]] = []

    async def keys(_request: web.Request) -> web.Response:
        status, body = answers.pop(0)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/_matrix/key/v2/server", keys)
    runner, origin = await start_fake_federation_server(ca, "gone.test.local", app)
    try:
        hs1 = await server_admitting(make_server, ca, "hs1.test.local", ["gone.test.local"])
        response = sign_json(
            {
                "server_name": origin,
                "valid_until_ts": expired,
                "verify_keys": {
                    "ed25519:old": {"key": encode_verify_key_base64(get_verify_key(key))}
                },
                "old_verify_keys": {},
            },
            origin,
            key,
        )
        answers.append((200, response))
        path = f"/_matrix/key/v2/query/{origin}/ed25519:old"
        status, body = await _raw_get(hs1, path, ca)
        assert status == 200
        [served] = body["server_keys"]
        assert served["valid_until_ts"] == expired and "ed25519:old" in served["verify_keys"]
        answers.append((400, {}))
        status, body = await _raw_get(hs1, f"{path}?minimum_valid_until_ts={expired + 1000}", ca)
        assert status == 200
        [served] = body["server_keys"]
        assert served["valid_until_ts"] == expired and "ed25519:old" in served["verify_keys"]
        assert not answers  # both answers were asked for
        # An expired key verifies nothing signed now.
        assert await hs1.hs.federation.keys.verify_key_for_request(origin, "ed25519:old") is None
    finally:
        await runner.cleanup()
