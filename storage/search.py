"""Full-text search over room events (table event_search, PostgreSQL text search).

Rows are written by `index`, inside the transaction that persists the events, so an event
is searchable exactly when it is readable. Only rooms without m.room.encryption in their
current state are indexed: a room that turns encryption on has its rows deleted in the
same transaction. Queries parse the search term with websearch_to_tsquery (words, "quoted
phrases", `or`, `-word`) in the configured text-search configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from storage.database import Database
from storage.events import PersistItem

# Event type -> (the request's key, the content field indexed).
SEARCHED_FIELDS: dict[str, tuple[str, str]] = {
    "m.room.message": ("content.body", "body"),
    "m.room.name": ("content.name", "name"),
    "m.room.topic": ("content.topic", "topic"),
}
SEARCH_KEYS = tuple(key for key, _ in SEARCHED_FIELDS.values())
# ts_rank_cd normalisation 32 (rank / (rank + 1)): ranks in [0, 1), comparable across rooms.
_RANK = "ts_rank_cd(s.vector, q, 32)"
# Recent order over more matches than this (in all the rooms searched): rooms with a page
# of matches are walked from their newest rows instead of reading and sorting every match
# (a word in one message in five of 100,000: 35 ms against 0.1 ms).
_WALK_ABOVE = 2_000
# A walk looks at this many of a room's newest rows per match wanted (at most
# _WALK_MAX_ROWS); a room where they hold fewer matches is read through the index instead.
_WALK_ROWS_PER_MATCH = 20
_WALK_MAX_ROWS = 5_000


class UnknownLanguage(Exception):
    """The configured text-search configuration is not in pg_ts_config."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    term: str
    keys: Sequence[str]
    room_ids: Sequence[str]
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()
    by_rank: bool = True


@dataclass(frozen=True, slots=True)
class Hit:
    event_id: str
    room_id: str
    stream_ordering: int
    rank: float


def _searchable(item: PersistItem) -> tuple[str, str] | None:
    """(key, text) of an event worth indexing, or None."""
    fields = SEARCHED_FIELDS.get(item.event["type"])
    if fields is None:
        return None
    key, field = fields
    if item.event["type"] != "m.room.message" and item.event.get("state_key") != "":
        return None  # a name or topic is room state
    content = item.event.get("content")
    value = content.get(field) if isinstance(content, dict) else None
    # A text column refuses U+0000 (event JSON may carry it escaped).
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        return None
    return key, value


class SearchStore:
    def __init__(self, db: Database, language: str):
        self.db = db
        self.language = language

    async def check_language(self) -> None:
        """Refuses a language PostgreSQL has no text-search configuration for."""
        found = await self.db.fetchval(
            "SELECT 1 FROM pg_ts_config WHERE cfgname = $1", self.language
        )
        if found is None:
            raise UnknownLanguage(self.language)

    # ---- writing, inside the persisting transaction ---------------------------------------

    async def index(self, conn, items: Sequence[PersistItem]) -> None:
        """Indexes the batch's searchable events. Runs after the events and current state
        of `items` are written, in the same transaction."""
        redacted = [it.redacts[0] for it in items if it.redacts is not None]
        if redacted:
            await conn.execute("DELETE FROM event_search WHERE event_id = ANY($1)", redacted)
        newly_encrypted = sorted(
            {
                it.room_id
                for it in items
                if it.event["type"] == "m.room.encryption" and it.event.get("state_key") == ""
            }
        )
        if newly_encrypted:
            await conn.execute(
                "DELETE FROM event_search WHERE room_id = ANY($1::text[])", newly_encrypted
            )
        found = [(it, f) for it in items if (f := _searchable(it)) is not None]
        if not found:
            return
        rooms = sorted({it.room_id for it, _ in found})
        # Current state is written already: this sees encryption turned on in this batch,
        # or by state resolution merging a fork.
        encrypted = {
            r["room_id"]
            for r in await conn.fetch(
                "SELECT room_id FROM current_state WHERE room_id = ANY($1::text[])"
                " AND type = 'm.room.encryption' AND state_key = ''",
                rooms,
            )
        }
        rows = [
            (it.event_id, key, it.room_id, it.event["sender"], it.stream_ordering, text)
            for it, (key, text) in found
            if it.room_id not in encrypted and it.redacts is None
        ]
        if rows:
            await conn.executemany(
                "INSERT INTO event_search (event_id, key, room_id, sender, stream_ordering,"
                " vector) VALUES ($1, $2, $3, $4, $5, to_tsvector($7::regconfig, $6))"
                " ON CONFLICT DO NOTHING",
                [(*row, self.language) for row in rows],
            )

    # ---- reading --------------------------------------------------------------------------

    def _where(self, query: SearchQuery, args: list[Any]) -> str:
        """The conditions every search and count shares; appends their arguments."""
        args.extend([query.term, self.language, list(query.room_ids), list(query.keys)])
        where = "s.vector @@ q AND s.room_id = ANY($3::text[]) AND s.key = ANY($4::text[])"
        if query.senders is not None:
            args.append(list(query.senders))
            where += f" AND s.sender = ANY(${len(args)}::text[])"
        if query.not_senders:
            args.append(list(query.not_senders))
            where += f" AND s.sender <> ALL(${len(args)}::text[])"
        return where

    async def search(
        self,
        query: SearchQuery,
        after: tuple[float, int] | None,
        limit: int,
        counts: Mapping[str, int] | None = None,
    ) -> list[Hit]:
        """Matches in order (rank then newest, or newest), strictly after `after`, the
        (rank, stream ordering) of the last match already returned. `counts` (matches per
        room, `count_by_room`) lets recent order walk the rooms with many matches."""
        if query.by_rank or counts is None or sum(counts.values()) <= _WALK_ABOVE:
            return await self._matches(query, after, limit)
        dense = sorted(r for r, n in counts.items() if n >= limit)
        found = await self._walk(query, dense, after, limit) if dense else {}
        # A room whose walk found a page holds its newest matches in what it looked at.
        done = {r for r, hits in found.items() if len(hits) >= limit}
        hits = [h for r in done for h in found[r][:limit]]
        rest = [r for r in query.room_ids if counts.get(r) and r not in done]
        if rest:
            hits += await self._matches(replace(query, room_ids=rest), after, limit)
        hits.sort(key=lambda h: h.stream_ordering, reverse=True)
        return hits[:limit]

    async def _matches(
        self, query: SearchQuery, after: tuple[float, int] | None, limit: int
    ) -> list[Hit]:
        """Every match read through the text index, ordered, the first `limit` kept."""
        args: list[Any] = []
        where = self._where(query, args)
        if after is not None:
            rank, ordering = after
            args.append(ordering)
            o = f"${len(args)}"
            if query.by_rank:
                args.append(rank)
                r = f"${len(args)}::real"
                where += f" AND ({_RANK} < {r} OR ({_RANK} = {r} AND s.stream_ordering < {o}))"
            else:
                where += f" AND s.stream_ordering < {o}"
        args.append(limit)
        if query.by_rank:
            sql = (
                f"SELECT s.event_id, s.room_id, s.stream_ordering, {_RANK} AS rank"
                " FROM event_search s, websearch_to_tsquery($2::regconfig, $1) q"
                f" WHERE {where} ORDER BY {_RANK} DESC, s.stream_ordering DESC"
                f" LIMIT ${len(args)}"
            )
        else:
            # Ranked after the limit: only the rows returned.
            sql = (
                f"SELECT s.event_id, s.room_id, s.stream_ordering, {_RANK} AS rank"
                " FROM (SELECT s.event_id, s.room_id, s.stream_ordering, s.vector"
                "   FROM event_search s, websearch_to_tsquery($2::regconfig, $1) q"
                f"   WHERE {where} ORDER BY s.stream_ordering DESC LIMIT ${len(args)}) s,"
                " websearch_to_tsquery($2::regconfig, $1) q ORDER BY s.stream_ordering DESC"
            )
        return _hits(await self.db.fetch(sql, *args))

    async def _walk(
        self, query: SearchQuery, room_ids: list[str], after: tuple[float, int] | None, limit: int
    ) -> dict[str, list[Hit]]:
        """Per room, the matches among its newest rows (before `after`), newest first."""
        args: list[Any] = []
        where = self._where(replace(query, room_ids=room_ids), args)
        args.append(min(limit * _WALK_ROWS_PER_MATCH, _WALK_MAX_ROWS))
        rows_cap = f"${len(args)}"
        before = ""
        if after is not None:
            args.append(after[1])
            before = f" AND w.stream_ordering < ${len(args)}"
        rows = await self.db.fetch(
            f"SELECT s.event_id, s.room_id, s.stream_ordering, {_RANK} AS rank"
            " FROM unnest($3::text[]) AS r(room_id)"
            " CROSS JOIN LATERAL (SELECT * FROM event_search w WHERE w.room_id = r.room_id"
            f"   {before} ORDER BY w.stream_ordering DESC LIMIT {rows_cap}) s,"
            " websearch_to_tsquery($2::regconfig, $1) q"
            f" WHERE {where} ORDER BY s.stream_ordering DESC",
            *args,
        )
        found: dict[str, list[Hit]] = {}
        for hit in _hits(rows):
            found.setdefault(hit.room_id, []).append(hit)
        return found

    async def count_by_room(self, query: SearchQuery) -> dict[str, int]:
        """Matches per room (rooms without any left out)."""
        args: list[Any] = []
        where = self._where(query, args)
        rows = await self.db.fetch(
            "SELECT s.room_id, count(*) AS n FROM event_search s,"
            f" websearch_to_tsquery($2::regconfig, $1) q WHERE {where} GROUP BY s.room_id",
            *args,
        )
        return {r["room_id"]: r["n"] for r in rows}

    async def highlights(self, term: str) -> list[str]:
        """The lexemes the term is searched as (stemmed, in the configured language)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT unnest(tsvector_to_array(to_tsvector($2::regconfig, $1))) AS word",
            term,
            self.language,
        )
        return sorted(r["word"] for r in rows)


def _hits(rows) -> list[Hit]:
    # An event matching on two keys (never today: one field per type, and one row per
    # event and key) appears once.
    seen: set[str] = set()
    hits = []
    for r in rows:
        if r["event_id"] not in seen:
            seen.add(r["event_id"])
            hits.append(Hit(r["event_id"], r["room_id"], r["stream_ordering"], r["rank"]))
    return hits
