"""Client profile lookups of users on other servers, answered over federation."""

from __future__ import annotations

from nio import ProfileGetDisplayNameResponse, ProfileGetError, ProfileGetResponse

from tests.federation_ca import TestCA, start_federating_server


async def test_profile_of_a_remote_user(make_server, tmp_path):
    ca = TestCA(tmp_path / "ca")
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    alice = await hs1.client("alice")
    await alice.set_displayname("Alice of hs1")
    bob = await hs2.client("bob")

    got = await bob.get_profile(alice.user_id)
    assert isinstance(got, ProfileGetResponse), got
    assert got.displayname == "Alice of hs1"
    got = await bob.get_displayname(alice.user_id)
    assert isinstance(got, ProfileGetDisplayNameResponse), got
    assert got.displayname == "Alice of hs1"

    got = await bob.get_profile(f"@nobody:{hs1.server_name}")
    assert isinstance(got, ProfileGetError) and got.status_code == "M_NOT_FOUND", got
    # A server hs2 does not admit is never contacted.
    got = await bob.get_profile("@carol:hs3.test.local:8448")
    assert isinstance(got, ProfileGetError) and got.status_code == "M_FORBIDDEN", got
    # Nobody anonymous makes us contact another server.
    status, body = await hs2.request("GET", f"/_matrix/client/v3/profile/{alice.user_id}")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
