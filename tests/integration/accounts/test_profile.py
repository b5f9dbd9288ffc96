"""Profiles: nio get/set of displayname and avatar, propagation into joined rooms, bad input."""

from urllib.parse import quote

from nio import (
    ProfileGetAvatarResponse,
    ProfileGetDisplayNameResponse,
    ProfileGetResponse,
    ProfileSetAvatarResponse,
    ProfileSetDisplayNameResponse,
    RoomCreateResponse,
)

from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"


async def test_set_and_get_profile(server):
    alice = await server.client("alice")
    # A new account's display name defaults to its localpart, as in Synapse.
    resp = await alice.get_displayname()
    assert isinstance(resp, ProfileGetDisplayNameResponse) and resp.displayname == "alice"

    assert isinstance(await alice.set_displayname("Alice A."), ProfileSetDisplayNameResponse)
    assert isinstance(await alice.set_avatar("mxc://test.local/avatar"), ProfileSetAvatarResponse)
    bob = await server.client("bob")
    resp = await bob.get_profile(alice.user_id)
    assert isinstance(resp, ProfileGetResponse)
    assert (resp.displayname, resp.avatar_url) == ("Alice A.", "mxc://test.local/avatar")
    resp = await bob.get_avatar(alice.user_id)
    assert (
        isinstance(resp, ProfileGetAvatarResponse) and resp.avatar_url == "mxc://test.local/avatar"
    )

    status, body = await server.request("GET", f"{V3}/profile/{quote(alice.user_id)}")
    assert_matches_schema("profile.yaml", "/profile/{userId}", "get", 200, body)
    status, body = await server.request("GET", f"{V3}/profile/{quote(alice.user_id)}/displayname")
    assert body == {"displayname": "Alice A."}


async def test_profile_errors_change_nothing(server):
    alice = await server.client("carol")
    path = f"{V3}/profile/{quote(alice.user_id)}"
    cases = [
        ("displayname", {"displayname": 5}, 400, "M_BAD_JSON"),
        ("displayname", {"displayname": "x" * 300}, 400, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "http://evil/img.png"}, 400, "M_INVALID_PARAM"),
    ]
    for name, body, status, errcode in cases:
        got_status, got = await server.request(
            "PUT", f"{path}/{name}", token=alice.access_token, json=body
        )
        assert (got_status, got.get("errcode")) == (status, errcode), body
    got_status, got = await server.request(
        "PUT", f"{path}/displayname", token=alice.access_token, data=b"{"
    )
    assert got_status == 400 and got["errcode"] == "M_NOT_JSON"
    other = await server.client("dan")
    got_status, got = await server.request(
        "PUT", f"{path}/displayname", token=other.access_token, json={"displayname": "pwned"}
    )
    assert got_status == 403 and got["errcode"] == "M_FORBIDDEN"
    row = await server.db.fetchrow(
        "SELECT displayname, avatar_url FROM profiles WHERE user_id = $1", alice.user_id
    )
    assert (row["displayname"], row["avatar_url"]) == ("carol", None)

    got_status, got = await server.request("GET", f"{V3}/profile/{quote('@ghost:test.local')}")
    assert got_status == 404 and got["errcode"] == "M_NOT_FOUND"


async def test_profile_change_updates_member_events(server):
    alice = await server.client("erin")
    created = await alice.room_create(name="profile test")
    assert isinstance(created, RoomCreateResponse), created
    assert isinstance(await alice.set_displayname("Erin Example"), ProfileSetDisplayNameResponse)
    status, member = await server.request(
        "GET",
        f"{V3}/rooms/{quote(created.room_id)}/state/m.room.member/{quote(alice.user_id)}",
        token=alice.access_token,
    )
    assert status == 200, member
    assert member["membership"] == "join" and member["displayname"] == "Erin Example"
