"""Room summaries kept at event persistence agree with the migration's backfill of them
from stored state, and follow name, avatar, encryption, membership and bumps."""

from __future__ import annotations

from pathlib import Path

import storage

MIGRATION = Path(storage.__file__).parent / "migrations" / "1100_sliding_sync.sql"
ROOM_COLUMNS = (
    "room_id, bump_stamp, last_ordering, name, avatar, encrypted, room_type,"
    " joined_count, invited_count"
)
USER_COLUMNS = "user_id, room_id, membership, event_id, sender, ordering, is_direct"


def _backfill_statements() -> list[str]:
    text = MIGRATION.read_text()
    statements = [s.strip() for s in text.split(";\n")]
    return [
        s
        for s in statements
        if "INSERT INTO room_summaries" in s
        or "UPDATE room_summaries" in s
        or "INSERT INTO user_room_summaries" in s
    ]


async def backfilled(db) -> tuple[list, list]:
    """The summaries rebuilt by the migration's backfill from what is stored."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM room_summaries")
        await conn.execute("DELETE FROM user_room_summaries")
        for statement in _backfill_statements():
            await conn.execute(statement)
    return await snapshot(db)


async def snapshot(db) -> tuple[list, list]:
    rooms = await db.fetch(f"SELECT {ROOM_COLUMNS} FROM room_summaries ORDER BY room_id")
    users = await db.fetch(
        f"SELECT {USER_COLUMNS} FROM user_room_summaries ORDER BY user_id, room_id"
    )
    return [tuple(r) for r in rooms], [tuple(r) for r in users]


async def test_maintained_rows_match_the_backfill(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    named = (await alice.room_create(name="Budget", invite=[bob.user_id])).room_id
    await bob.join(named)
    await alice.room_put_state(named, "m.room.avatar", {"url": "mxc://test.local/a"})
    await alice.room_put_state(named, "m.room.name", {"name": "Budget 2027"})
    await alice.room_send(named, "m.room.message", {"msgtype": "m.text", "body": "x"})
    await alice.room_put_state(named, "m.room.topic", {"topic": "not a bump"})
    space = (await alice.room_create(space=True)).room_id
    encrypted = (
        await bob.room_create(
            invite=[carol.user_id, alice.user_id],
            is_direct=True,
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
    ).room_id
    await carol.join(encrypted)
    await carol.room_leave(encrypted)
    await bob.room_leave(named)
    await alice.room_put_state(named, "m.room.name", {})  # the name removed

    maintained = await snapshot(server.db)
    rooms = {r[0]: r for r in maintained[0]}
    assert rooms[named][3:9] == (None, "mxc://test.local/a", False, None, 1, 0)
    assert rooms[space][6] == "m.space"
    assert rooms[encrypted][5:9] == (True, None, 1, 1)
    users = {(u[0], u[1]): u for u in maintained[1]}
    assert users[(alice.user_id, encrypted)][2] == "invite"
    assert users[(alice.user_id, encrypted)][6] is True  # is_direct
    assert users[(carol.user_id, encrypted)][2] == "leave"
    assert users[(bob.user_id, named)][2] == "leave"

    assert await backfilled(server.db) == maintained
