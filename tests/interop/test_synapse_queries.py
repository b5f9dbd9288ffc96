"""Server keys, notaries and signed queries (profile, directory, public rooms) between our
server and Synapse, both ways; and each side refusing what it does not admit."""

from __future__ import annotations

import ssl
import uuid

import aiohttp
import pytest
from nio import ProfileGetResponse, RoomResolveAliasResponse, RoomVisibility
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes, get_verify_key
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from federation.client import FederationError
from tests.federation_ca import TestCA, start_federating_server
from tests.synapse_peer import OUR_HOST, SynapsePeer


async def _get(url: str, peer: SynapsePeer, server_hostname: str | None = None, json=None) -> dict:
    """Unauthenticated HTTPS (GET, or POST of `json`) checked against the test CA: key
    endpoints need no request signature."""
    ctx = ssl.create_default_context(cafile=str(peer.ca.ca_path))
    method = "POST" if json is not None else "GET"
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, url, json=json, ssl=ctx, server_hostname=server_hostname
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 200, body
            return body


def _synapse_verify_key(peer: SynapsePeer):
    """Synapse's key from its own key file: the truth to compare what travels against."""
    algorithm, version, seed = (peer.process.data_dir / "signing.key").read_text().split()
    signing_key = decode_signing_key_base64(algorithm, version, seed)
    return f"{algorithm}:{version}", get_verify_key(signing_key)


def _verify_self_signed(response: dict, server_name: str) -> None:
    assert response["verify_keys"]
    for key_id, entry in response["verify_keys"].items():
        key = decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
        verify_signed_json(response, server_name, key)


async def test_synapse_fetches_our_keys_and_serves_them_as_notary(ours, synapse_peer):
    """Asked for our key by ID, Synapse's notary endpoint fetches our keys directly (it
    trusts no notary), checks our self-signature, and countersigns them."""
    own = ours.hs.federation.server_keys
    url = f"{synapse_peer.federation_url}/_matrix/key/v2/query"
    body = await _get(
        url,
        synapse_peer,
        json={"server_keys": {ours.server_name: {own.key_id: {"minimum_valid_until_ts": 0}}}},
    )
    [response] = body["server_keys"]
    assert response["server_name"] == ours.server_name
    assert response["verify_keys"][own.key_id]["key"] == own.verify_key_b64
    verify_signed_json(response, ours.server_name, own.verify_key)
    key_id, synapse_key = _synapse_verify_key(synapse_peer)
    verify_signed_json(response, synapse_peer.server_name, synapse_key)


async def test_we_fetch_and_verify_synapses_keys(ours, synapse_peer):
    key_id, truth = _synapse_verify_key(synapse_peer)
    key = await ours.hs.federation.keys.verify_key(synapse_peer.server_name, key_id, at_ts=0)
    assert key is not None and key.encode() == truth.encode()
    cached = await ours.db.fetchval(
        "SELECT count(*) FROM federation_remote_keys WHERE server_name = $1",
        synapse_peer.server_name,
    )
    assert cached == 1


async def test_our_notary_serves_synapses_keys(ours, synapse_peer):
    body = await _get(
        f"{ours.federation_url}_matrix/key/v2/query/{synapse_peer.server_name}",
        synapse_peer,
        server_hostname=OUR_HOST,
    )
    [response] = body["server_keys"]
    _verify_self_signed(response, synapse_peer.server_name)
    key_id, truth = _synapse_verify_key(synapse_peer)
    assert decode_base64(response["verify_keys"][key_id]["key"]) == truth.encode()
    verify_signed_json(response, ours.server_name, ours.hs.federation.server_keys.verify_key)


async def test_synapse_user_reads_our_users_profile(ours, synapse_peer):
    """Synapse calls our /query/profile with its X-Matrix signature; we verify and answer."""
    alice = await ours.client("alice")
    await alice.set_displayname("Alice Ours")
    bob = await synapse_peer.client()
    try:
        got = await bob.get_profile(alice.user_id)
        assert isinstance(got, ProfileGetResponse), got
        assert got.displayname == "Alice Ours"
        # A user we do not have: Synapse relays our 404.
        got = await bob.get_profile(f"@nobody:{ours.server_name}")
        assert not isinstance(got, ProfileGetResponse)
        assert got.status_code == "M_NOT_FOUND"
    finally:
        await bob.close()


async def test_our_user_reads_a_synapse_users_profile(ours, synapse_peer):
    """Our client API asks Synapse's /query/profile on behalf of our signed-in user."""
    bob = await synapse_peer.client()
    try:
        await bob.set_displayname("Bob via the client API")
    finally:
        await bob.close()
    alice = await ours.client("alice")
    got = await alice.get_profile(bob.user_id)
    assert isinstance(got, ProfileGetResponse), got
    assert got.displayname == "Bob via the client API"
    got = await alice.get_profile(f"@nobody:{synapse_peer.server_name}")
    assert not isinstance(got, ProfileGetResponse)
    assert got.status_code == "M_NOT_FOUND"


async def test_we_read_a_synapse_users_profile(ours, synapse_peer):
    """Synapse verifies our X-Matrix signature (fetching our key) and answers."""
    bob = await synapse_peer.client()
    try:
        await bob.set_displayname("Bob Synapse")
    finally:
        await bob.close()
    got = await ours.hs.federation.client.get_json(
        synapse_peer.server_name,
        "/_matrix/federation/v1/query/profile",
        query={"user_id": bob.user_id, "field": "displayname"},
    )
    assert got == {"displayname": "Bob Synapse"}
    with pytest.raises(FederationError) as err:
        await ours.hs.federation.client.get_json(
            synapse_peer.server_name,
            "/_matrix/federation/v1/query/profile",
            query={"user_id": f"@nobody:{synapse_peer.server_name}"},
        )
    assert (err.value.status, err.value.errcode) == (404, "M_NOT_FOUND")


async def test_room_alias_lookups_both_ways(ours, synapse_peer):
    alice = await ours.client("alice")
    ours_room = await alice.room_create(alias="lobby")
    bob = await synapse_peer.client()
    try:
        # Synapse resolves our alias through our /query/directory.
        got = await bob.room_resolve_alias(f"#lobby:{ours.server_name}")
        assert isinstance(got, RoomResolveAliasResponse), got
        assert got.room_id == ours_room.room_id
        assert ours.server_name in got.servers
        # We resolve Synapse's alias through its /query/directory.
        hall = f"hall{uuid.uuid4().hex[:6]}"  # one Synapse serves every test: unique names
        syn_room = await bob.room_create(alias=hall)
    finally:
        await bob.close()
    got = await ours.hs.federation.client.get_json(
        synapse_peer.server_name,
        "/_matrix/federation/v1/query/directory",
        query={"room_alias": f"#{hall}:{synapse_peer.server_name}"},
    )
    assert got["room_id"] == syn_room.room_id
    assert synapse_peer.server_name in got["servers"]


async def test_synapse_refused_when_we_do_not_admit_it(make_server, synapse_peer):
    """A server of ours whose allow-list lacks Synapse refuses Synapse's signed request."""
    closed = await start_federating_server(
        make_server, synapse_peer.ca, OUR_HOST, [], sock=synapse_peer.take_socket()
    )
    alice = await closed.client("alice")
    await alice.set_displayname("Alice Closed")
    before = await _refused_inbound(closed)
    bob = await synapse_peer.client()
    try:
        got = await bob.get_profile(alice.user_id)
    finally:
        await bob.close()
    assert not isinstance(got, ProfileGetResponse)
    assert await _refused_inbound(closed) == before + 1


async def test_synapse_refuses_a_server_it_does_not_admit(make_server, synapse_peer):
    """A server of ours whose name is not on Synapse's whitelist gets 403 M_FORBIDDEN."""
    stranger = await start_federating_server(
        make_server, synapse_peer.ca, OUR_HOST, [synapse_peer.server_name]
    )
    with pytest.raises(FederationError) as err:
        await stranger.hs.federation.client.get_json(
            synapse_peer.server_name,
            "/_matrix/federation/v1/query/profile",
            query={"user_id": f"@nobody:{synapse_peer.server_name}"},
        )
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")


async def _refused_inbound(server) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.metrics_url) as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith('matrix_federation_refused_requests_total{direction="inbound"}'):
            return float(line.split()[-1])
    return 0.0


async def test_synapse_verifies_our_certificate(make_server, synapse_peer, tmp_path):
    """Certificate verification is on in Synapse: a server of ours whose certificate comes
    from a CA Synapse does not trust gets no keys fetched."""
    other_ca = TestCA(tmp_path / "other-ca", "A CA Synapse does not trust")
    untrusted = await start_federating_server(
        make_server, other_ca, OUR_HOST, [synapse_peer.server_name], sock=synapse_peer.take_socket()
    )
    key_id = untrusted.hs.federation.server_keys.key_id
    url = f"{synapse_peer.federation_url}/_matrix/key/v2/query"
    query = {"server_keys": {untrusted.server_name: {key_id: {"minimum_valid_until_ts": 0}}}}
    body = await _get(url, synapse_peer, json=query)
    assert body["server_keys"] == []


async def test_synapse_user_lists_our_public_rooms(ours, synapse_peer):
    """Synapse asks our federation publicRooms on behalf of its user."""
    alice = await ours.client("alice")
    created = await alice.room_create(
        visibility=RoomVisibility.public, alias="square", name="Town square"
    )
    await alice.room_create(name="Not listed")
    bob = await synapse_peer.client()
    try:
        http = await synapse_peer.http()
        async with http.get(
            f"{synapse_peer.client_url}/_matrix/client/v3/publicRooms",
            params={"server": ours.server_name},
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    finally:
        await bob.close()
    [room] = body["chunk"]
    assert room["room_id"] == created.room_id
    assert room["name"] == "Town square"
    assert room["canonical_alias"] == f"#square:{ours.server_name}"
    assert room["num_joined_members"] == 1


async def test_our_user_lists_synapses_public_rooms(ours, synapse_peer):
    bob = await synapse_peer.client()
    try:
        name = f"Synapse square {uuid.uuid4().hex[:6]}"
        created = await bob.room_create(visibility=RoomVisibility.public, name=name)
    finally:
        await bob.close()
    alice = await ours.client("alice")
    status, body = await ours.request(
        "GET",
        f"/_matrix/client/v3/publicRooms?server={synapse_peer.server_name}&limit=100",
        token=alice.access_token,
    )
    assert status == 200, body
    [room] = [r for r in body["chunk"] if r["room_id"] == created.room_id]
    assert room["name"] == name
