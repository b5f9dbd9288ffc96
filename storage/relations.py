"""Event relationships: the `event_relations` and `threads` rows and their reads.

A row is written for every event with an `m.relates_to` carrying a string `rel_type` and
`event_id`, in the transaction that stores the event (`write_relations`, called by
EventStore for local, federated and backfilled events alike), and deleted when the event
is redacted (`remove_relations`). Reads (the /relations and /threads pages, the bundled
aggregations) look only at these rows and the events' indexed columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import Database

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"


def relation_of(event: dict[str, Any]) -> tuple[str, str] | None:
    """(rel_type, parent event id) of an event's cleartext m.relates_to, if well formed."""
    content = event.get("content")
    if not isinstance(content, dict):
        return None
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str) or not rel_type:
        return None
    if "\x00" in rel_type or "\x00" in parent:
        # No event ID holds U+0000, and a text column refuses it: no relation.
        return None
    return rel_type, parent


def annotation_key(event: dict[str, Any]) -> str | None:
    """The `key` of an m.annotation relation (U+0000 cannot be stored: none)."""
    key = event["content"]["m.relates_to"].get("key")
    return key if isinstance(key, str) and "\x00" not in key else None


def _edit_candidate(event: dict[str, Any], rel_type: str) -> bool:
    if rel_type != REPLACE or "state_key" in event:
        return False
    # An encrypted edit carries m.new_content inside the ciphertext, out of our sight.
    return event["type"] == "m.room.encrypted" or isinstance(
        event["content"].get("m.new_content"), dict
    )


async def write_relations(conn, events: Iterable[tuple[str, str, int, dict[str, Any]]]) -> None:
    """Indexes the relations among `events` (event id, room id, stream ordering, event)
    inside the caller's transaction, and moves their threads' latest activity."""
    rows = []
    for event_id, room_id, ordering, event in events:
        rel = relation_of(event)
        if rel is None or rel[1] == event_id:
            continue
        rel_type, parent = rel
        rows.append(
            (
                event_id,
                parent,
                rel_type,
                room_id,
                event["type"],
                event["sender"],
                ordering,
                event["origin_server_ts"],
                annotation_key(event) if rel_type == ANNOTATION else None,
                _edit_candidate(event, rel_type),
            )
        )
    if not rows:
        return
    await conn.executemany(
        "INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id, type, sender,"
        " stream_ordering, origin_server_ts, key, edit_candidate)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (event_id) DO NOTHING",
        rows,
    )
    # A redaction can arrive over federation before its target: that target relates to
    # nothing either.
    already = await conn.fetch(
        "SELECT redacts FROM redactions WHERE redacts = ANY($1::text[])", [r[0] for r in rows]
    )
    if already:
        gone = {r["redacts"] for r in already}
        await conn.execute(
            "DELETE FROM event_relations WHERE event_id = ANY($1::text[])", list(gone)
        )
        rows = [r for r in rows if r[0] not in gone]
    latest: dict[tuple[str, str], int] = {}
    for row in rows:
        if row[2] == THREAD:
            key = (row[3], row[1])
            latest[key] = max(latest.get(key, row[6]), row[6])
    if latest:
        # Sorted: two processes updating the same threads take the row locks in one order.
        await conn.executemany(
            "INSERT INTO threads (room_id, root_id, latest_ordering) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id, root_id) DO UPDATE"
            " SET latest_ordering = GREATEST(threads.latest_ordering, EXCLUDED.latest_ordering)",
            [(room, root, pos) for (room, root), pos in sorted(latest.items())],
        )


async def remove_relations(conn, event_ids: Sequence[str]) -> None:
    """Redacted events relate to nothing any more: their rows go, and the threads they
    were the latest event of fall back to the newest remaining one (or go)."""
    removed = await conn.fetch(
        "DELETE FROM event_relations WHERE event_id = ANY($1::text[])"
        " RETURNING room_id, relates_to_id, rel_type",
        list(event_ids),
    )
    threads = sorted(
        {(r["room_id"], r["relates_to_id"]) for r in removed if r["rel_type"] == THREAD}
    )
    if not threads:
        return
    rooms, roots = [t[0] for t in threads], [t[1] for t in threads]
    await conn.execute(
        "UPDATE threads t SET latest_ordering = x.latest FROM ("
        "  SELECT k.room_id, k.root_id, (SELECT max(r.stream_ordering) FROM event_relations r"
        "    WHERE r.relates_to_id = k.root_id AND r.rel_type = 'm.thread') AS latest"
        "  FROM unnest($1::text[], $2::text[]) AS k(room_id, root_id)) x"
        " WHERE t.room_id = x.room_id AND t.root_id = x.root_id AND x.latest IS NOT NULL",
        rooms,
        roots,
    )
    await conn.execute(
        "DELETE FROM threads t USING unnest($1::text[], $2::text[]) AS k(room_id, root_id)"
        " WHERE t.room_id = k.room_id AND t.root_id = k.root_id AND NOT EXISTS ("
        "   SELECT 1 FROM event_relations r WHERE r.relates_to_id = k.root_id"
        "   AND r.rel_type = 'm.thread')",
        rooms,
        roots,
    )


@dataclass
class Aggregation:
    """What one parent event's bundled aggregation is made of (event ids, to be loaded)."""

    thread_count: int = 0
    thread_latest: str | None = None
    thread_participated: bool = False
    edit: str | None = None
    references: list[str] | None = None


@dataclass(frozen=True)
class ThreadRow:
    root_id: str
    latest_ordering: int


class RelationsStore:
    def __init__(self, db: Database):
        self.db = db

    async def children(
        self,
        room_id: str,
        parent_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        after: int | None,
        upto: int | None,
        limit: int,
        backwards: bool,
        depth: int,
    ) -> list[str]:
        """Ids of the events relating to `parent_id` (through up to `depth` relations when
        depth > 1) with after < ordering <= upto, newest first when backwards. The filters
        apply to the returned events, at every depth."""
        # Conditions are added only for the filters given: `$n IS NULL OR ...` would leave
        # the prepared statement's generic plan unable to walk the index in order.
        args: list[Any] = [room_id, parent_id]
        conds = []
        for column, op, value in (
            ("rel_type", "=", rel_type),
            ("type", "=", event_type),
            ("stream_ordering", ">", after),
            ("stream_ordering", "<=", upto),
        ):
            if value is not None:
                args.append(value)
                conds.append(f" AND r.{column} {op} ${len(args)}")
        args.append(limit)
        order = "DESC" if backwards else "ASC"
        tail = f"{''.join(conds)} ORDER BY r.stream_ordering {order} LIMIT ${len(args)}"
        if depth <= 1:
            query = (
                "SELECT r.event_id FROM event_relations r"
                f" WHERE r.relates_to_id = $2 AND r.room_id = $1{tail}"
            )
        else:
            args.append(depth)
            query = (
                "WITH RECURSIVE rel(event_id, depth) AS ("
                "  SELECT event_id, 1 FROM event_relations"
                "  WHERE relates_to_id = $2 AND room_id = $1"
                "  UNION"
                "  SELECT r.event_id, rel.depth + 1 FROM rel"
                "  JOIN event_relations r ON r.relates_to_id = rel.event_id AND r.room_id = $1"
                f"  WHERE rel.depth < ${len(args)})"
                " SELECT r.event_id FROM (SELECT DISTINCT event_id FROM rel) rel"
                f" JOIN event_relations r ON r.event_id = rel.event_id WHERE TRUE{tail}"
            )
        rows = await self.db.fetch(query, *args)
        return [r["event_id"] for r in rows]

    async def related(self, parent_ids: Sequence[str]) -> frozenset[str]:
        """Those of the events that have a relation that aggregations bundles (a thread,
        an edit or a reference)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT relates_to_id FROM event_relations"
            " WHERE relates_to_id = ANY($1::text[])"
            " AND rel_type IN ('m.thread', 'm.replace', 'm.reference')",
            list(parent_ids),
        )
        return frozenset(r["relates_to_id"] for r in rows)

    async def aggregations(
        self, parent_ids: Sequence[str], user_id: str, ignored: Sequence[str] = ()
    ) -> dict[str, Aggregation]:
        """The thread summary, latest valid edit and references of each parent, and the
        edits and references of each thread's latest event (served inside the thread
        summary), in one query. Edits follow the spec (v1.7+): same sender and type as the
        original, neither a state event, the original not itself an edit; newest by
        origin_server_ts, then event id. Events from `ignored` senders count in no thread."""
        rows = await self.db.fetch(
            "WITH thread AS ("
            "  SELECT r.relates_to_id AS parent, count(*) AS n,"
            "   (array_agg(r.event_id ORDER BY r.stream_ordering DESC))[1] AS latest,"
            "   bool_or(r.sender = $2) AS participated"
            "  FROM event_relations r JOIN events p ON p.event_id = r.relates_to_id"
            "  WHERE r.relates_to_id = ANY($1::text[]) AND r.room_id = p.room_id"
            "  AND r.rel_type = 'm.thread' AND r.sender <> ALL($3::text[])"
            "  GROUP BY r.relates_to_id),"
            " ids AS (SELECT unnest($1::text[]) AS id UNION SELECT latest FROM thread)"
            " SELECT parent, 't' AS kind, n, latest AS event_id, participated,"
            "  NULL::text[] AS refs FROM thread"
            " UNION ALL"
            " (SELECT DISTINCT ON (r.relates_to_id) r.relates_to_id, 'e', 1, r.event_id,"
            "  NULL, NULL FROM event_relations r"
            " JOIN events p ON p.event_id = r.relates_to_id"
            " WHERE r.relates_to_id IN (SELECT id FROM ids) AND r.room_id = p.room_id"
            " AND r.rel_type = 'm.replace' AND r.edit_candidate"
            " AND r.sender = p.sender AND r.type = p.type AND p.state_key IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM event_relations x"
            "   WHERE x.event_id = p.event_id AND x.rel_type = 'm.replace')"
            " ORDER BY r.relates_to_id, r.origin_server_ts DESC, r.event_id DESC)"
            " UNION ALL"
            " SELECT r.relates_to_id, 'r', count(*), NULL, NULL,"
            "  array_agg(r.event_id ORDER BY r.stream_ordering)"
            " FROM event_relations r JOIN events p ON p.event_id = r.relates_to_id"
            " WHERE r.relates_to_id IN (SELECT id FROM ids) AND r.room_id = p.room_id"
            " AND r.rel_type = 'm.reference' GROUP BY r.relates_to_id",
            list(parent_ids),
            user_id,
            list(ignored),
        )
        result: dict[str, Aggregation] = {}
        for r in rows:
            agg = result.setdefault(r["parent"], Aggregation())
            if r["kind"] == "t":
                agg.thread_count = r["n"]
                agg.thread_latest = r["event_id"]
                agg.thread_participated = r["participated"]
            elif r["kind"] == "e":
                agg.edit = r["event_id"]
            else:
                agg.references = list(r["refs"])
        return result

    async def threads(
        self,
        room_id: str,
        *,
        before: int | None,
        limit: int,
        participant: str | None = None,
    ) -> list[ThreadRow]:
        """The room's threads by latest activity, newest first, whose latest event is below
        `before`; with `participant`, only threads that user started or wrote in."""
        args: list[Any] = [room_id, limit]
        conds = ""
        if before is not None:
            args.append(before)
            conds += f" AND t.latest_ordering < ${len(args)}"
        if participant is not None:
            args.append(participant)
            n = len(args)
            conds += (
                f" AND (EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.root_id"
                f"   AND e.sender = ${n}) OR EXISTS (SELECT 1 FROM event_relations r"
                f"   WHERE r.relates_to_id = t.root_id AND r.rel_type = 'm.thread'"
                f"   AND r.sender = ${n}))"
            )
        rows = await self.db.fetch(
            "SELECT t.root_id, t.latest_ordering FROM threads t"
            f" WHERE t.room_id = $1{conds} ORDER BY t.latest_ordering DESC LIMIT $2",
            *args,
        )
        return [ThreadRow(r["root_id"], r["latest_ordering"]) for r in rows]

    async def relation_of_event(self, event_id: str) -> tuple[str, str] | None:
        """(rel_type, parent) of a stored event that relates to another."""
        row = await self.db.fetchrow(
            "SELECT rel_type, relates_to_id FROM event_relations WHERE event_id = $1", event_id
        )
        return (row["rel_type"], row["relates_to_id"]) if row else None

    async def has_annotation(self, parent_id: str, sender: str, event_type: str, key: str) -> bool:
        """Whether `sender` annotated the event with this type and key (and kept it)."""
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM event_relations WHERE relates_to_id = $1"
                " AND rel_type = 'm.annotation' AND sender = $2 AND type = $3 AND key = $4",
                parent_id,
                sender,
                event_type,
                key,
            )
        )

    async def thread_roots(self, event_ids: Sequence[str]) -> dict[str, str]:
        """event -> the thread root it belongs to, for those of `event_ids` in a thread."""
        rows = await self.db.fetch(
            "SELECT event_id, relates_to_id FROM event_relations"
            " WHERE event_id = ANY($1::text[]) AND rel_type = 'm.thread'",
            list(event_ids),
        )
        return {r["event_id"]: r["relates_to_id"] for r in rows}
