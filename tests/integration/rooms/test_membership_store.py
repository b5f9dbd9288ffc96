"""The membership store on real PostgreSQL: one dialect for servers in a room, whatever
the server name looks like (ports, IPv6 literals, LIKE wildcards), and the sync streams
registered once, one per stream of the sync token."""

from homeserver.sync.streams.rooms import RoomsStream
from storage.membership import MembershipStore
from storage.streams import STREAMS

ROOM = "!room:test.local"
OTHER_ROOM = "!other:test.local"


async def _member(db, room_id: str, user_id: str, membership: str) -> None:
    await db.execute(
        "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
        " VALUES ($1, 'm.room.member', $2, $3, $4)",
        room_id,
        user_id,
        f"$ev-{room_id}-{user_id}",
        membership,
    )


async def test_servers_in_rooms_keep_ports_and_ipv6_literals(server):
    db = server.db
    for user, membership in [
        ("@a:test.local", "join"),
        ("@b:remote.example:8448", "join"),
        ("@c:[::1]:8448", "join"),
        ("@d:gone.example", "leave"),
        ("@e:invited.example", "invite"),
    ]:
        await _member(db, ROOM, user, membership)
    await _member(db, OTHER_ROOM, "@f:elsewhere.example", "join")
    store = MembershipStore(db)

    expected = {"test.local", "remote.example:8448", "[::1]:8448"}
    assert await store.servers_in_room(ROOM) == expected
    assert await store.servers_in_rooms([ROOM, OTHER_ROOM, "!unknown:x"]) == {
        ROOM: expected,
        OTHER_ROOM: {"elsewhere.example"},
    }
    assert await store.servers_sharing_room_with("@a:test.local") == expected
    assert await store.servers_sharing_room_with("@d:gone.example") == set()


async def test_server_members_match_the_whole_server_name(server):
    db = server.db
    for user, membership in [
        ("@a:ex_ample.org", "join"),
        ("@b:exXample.org", "join"),  # `_` must not match any character
        ("@c:sub.ex_ample.org", "join"),  # a suffix of another server's name is not it
        ("@d:ex_ample.org", "leave"),
    ]:
        await _member(db, ROOM, user, membership)
    store = MembershipStore(db)

    assert await store.server_members(ROOM, "ex_ample.org") == [
        "@a:ex_ample.org",
        "@d:ex_ample.org",
    ]
    assert await store.server_members(ROOM, "ex_ample.org", joined_only=True) == ["@a:ex_ample.org"]
    assert await store.server_members(ROOM, "ex_ample.org", limit=1) == ["@a:ex_ample.org"]


async def test_sharing_a_room(server):
    db = server.db
    await _member(db, ROOM, "@me:test.local", "join")
    await _member(db, ROOM, "@joined:remote.example", "join")
    await _member(db, ROOM, "@invited:remote.example", "invite")
    await _member(db, ROOM, "@left:remote.example", "leave")
    await _member(db, OTHER_ROOM, "@stranger:remote.example", "join")
    store = MembershipStore(db)

    sharing = {"@me:test.local", "@joined:remote.example", "@invited:remote.example"}
    assert await store.users_sharing_room_with("@me:test.local") == sharing
    candidates = ["@joined:remote.example", "@left:remote.example", "@stranger:remote.example"]
    assert await store.sharing_a_room("@me:test.local", candidates) == {"@joined:remote.example"}
    assert await store.users_sharing_room_with_server(candidates, "test.local") == {
        "@joined:remote.example"
    }
    assert await store.shares_room_with_server("@invited:remote.example", "test.local")
    assert not await store.shares_room_with_server("@stranger:remote.example", "test.local")
    assert await store.is_joined(ROOM, "@me:test.local")
    assert not await store.is_joined(ROOM, "@invited:remote.example")


async def test_every_sync_stream_has_one_provider_and_rooms_run_first(server):
    providers = server.hs.sync_handler.providers
    assert sorted(p.stream for p in providers) == sorted(STREAMS)
    assert isinstance(providers[0], RoomsStream)
