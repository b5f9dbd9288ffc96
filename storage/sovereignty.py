"""The plaintext scan of `homeserver audit-sovereignty` (homeserver/sovereignty.py):
message events with a body in rooms after their m.room.encryption event. Returns rooms,
types and counts, never contents."""

from __future__ import annotations

# Message events of an encrypted room that legitimately carry no ciphertext.
_CLEAR_TYPES = ("m.room.encrypted", "m.room.redaction")

PLAINTEXT_SQL = (
    "WITH enc AS ("
    "  SELECT room_id, min(stream_ordering) AS since FROM events"
    "  WHERE type = 'm.room.encryption' AND state_key = '' GROUP BY room_id"
    ")"
    " SELECT e.room_id, e.type, count(*) AS n FROM enc"
    " JOIN events e ON e.room_id = enc.room_id AND e.stream_ordering > enc.since"
    " WHERE e.state_key IS NULL AND NOT (e.type = ANY($1::text[]))"
    # Canonical JSON: no whitespace after the colon.
    " AND e.json LIKE '%\"body\":%'"
    " GROUP BY e.room_id, e.type ORDER BY e.room_id, e.type"
)


async def plaintext_in_encrypted_rooms(conn) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(PLAINTEXT_SQL, list(_CLEAR_TYPES))
    return [(r["room_id"], r["type"], r["n"]) for r in rows]
