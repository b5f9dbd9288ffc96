"""Process caches (homeserver/user_cache.py) where notifications can go missing, and key
claims made the way federation makes them. Two servers in one test process share one
database; each has its own caches and its own LISTEN connection."""

from __future__ import annotations

import asyncio
import base64
import os

from nio import LogoutResponse, WhoamiError, WhoamiResponse

from storage.database import LISTEN_APPLICATION_NAME


async def _until(condition) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_tokens_are_not_served_from_cache_while_invalidations_can_be_lost(
    make_server, fresh_dsn, monkeypatch
):
    first = await make_server()
    second = await make_server(dsn=fresh_dsn)
    alice = await first.client("alice")
    alice_on_second = second.new_client("alice")
    alice_on_second.restore_login(alice.user_id, alice.device_id, alice.access_token)
    other = await second.login("alice")
    assert isinstance(await alice_on_second.whoami(), WhoamiResponse)
    assert isinstance(await other.whoami(), WhoamiResponse)  # both cached on `second`

    gate = asyncio.Event()
    connect = second.hs.db._listen_connect

    async def gated_connect(callback):
        await gate.wait()
        await connect(callback)

    monkeypatch.setattr(second.hs.db, "_listen_connect", gated_connect)
    killed = await first.db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1",
        LISTEN_APPLICATION_NAME,
    )
    assert killed == 2
    await _until(lambda: not second.hs.db.listening)

    # `second` cannot hear this logout; it must not answer from its cache meanwhile.
    assert isinstance(await alice.logout(), LogoutResponse)
    refused = await alice_on_second.whoami()
    assert isinstance(refused, WhoamiError) and refused.status_code == "M_UNKNOWN_TOKEN"
    assert isinstance(await other.whoami(), WhoamiResponse)

    reconnects = second.hs.db.listen_reconnects
    gate.set()
    await _until(lambda: second.hs.db.listen_reconnects > reconnects)
    refused = await alice_on_second.whoami()
    assert isinstance(refused, WhoamiError) and refused.status_code == "M_UNKNOWN_TOKEN"
    # And it hears the next change again.
    assert isinstance(await other.whoami(), WhoamiResponse)
    alice_again = await first.login("alice")
    assert isinstance(await alice_again.logout(all_devices=True), LogoutResponse)
    await second.hs.user_cache.barrier()
    refused = await other.whoami()
    assert isinstance(refused, WhoamiError) and refused.status_code == "M_UNKNOWN_TOKEN"


def _public_key() -> str:
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


async def test_key_counts_follow_a_claim_made_for_another_server(make_server, fresh_dsn):
    first = await make_server()
    second = await make_server(dsn=fresh_dsn)
    erin = await first.client("erin")
    keys = {f"curve25519:K{i}": _public_key() for i in range(3)}
    status, _ = await first.request(
        "POST",
        "/_matrix/client/v3/keys/upload",
        token=erin.access_token,
        json={"one_time_keys": keys},
    )
    assert status == 200
    sync = await erin.sync(timeout=0)
    assert sync.device_key_count.curve25519 == 3  # cached on `first`

    # What `second` runs for GET /_matrix/federation/v1/user/keys/claim from a remote server.
    claimed = await second.hs.e2ee.keys.claim_local_keys(
        {erin.user_id: {erin.device_id: "curve25519"}}
    )
    assert len(claimed[erin.user_id][erin.device_id]) == 1
    # Once `first` has heard everything committed so far (its own NOTIFY, heard back).
    await first.hs.user_cache.barrier()
    sync = await erin.sync(timeout=0, since=sync.next_batch)
    assert sync.device_key_count.curve25519 == 2
