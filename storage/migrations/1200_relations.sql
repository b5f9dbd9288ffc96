-- Event relationships (an m.relates_to with a rel_type and an event_id), one row per
-- relating event, written in the transaction that stores the event (storage/relations.py):
-- /relations, /threads and the bundled aggregations read these rows, never event content.
-- A redaction deletes its target's row (the relationship is broken).
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    -- An m.annotation's key (a user may not send the same one twice: M_DUPLICATE_ANNOTATION).
    key TEXT,
    -- An m.replace that can be a valid edit on its own terms: not a state event, and it
    -- carries m.new_content (or is encrypted, where the server cannot look). Sender and
    -- type are compared with the original when aggregating.
    edit_candidate BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type, stream_ordering);

-- One row per thread root with the stream ordering of its newest m.thread event: the
-- thread list (/threads) is ordered by latest activity without grouping relations.
CREATE TABLE threads (
    room_id TEXT NOT NULL,
    root_id TEXT NOT NULL,
    latest_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, root_id)
);
CREATE INDEX threads_room_latest ON threads (room_id, latest_ordering);

-- Existing events: the same rows, from the stored JSON (canonical, so valid JSON). The
-- json operators refuse a document holding an escaped U+0000 anywhere, so it is read with
-- each one replaced by U+FFFD; a relation whose rel_type or event_id held one is then left
-- out, as storage/relations.py leaves it out (no event ID holds U+0000).
INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id, type, sender,
                             stream_ordering, origin_server_ts, key, edit_candidate)
SELECT e.event_id, r.parent, r.rel_type, e.room_id, e.type, e.sender,
       e.stream_ordering, e.origin_server_ts,
       CASE WHEN strpos(e.json, '\u0000') = 0 OR strpos(r.key, U&'\FFFD') = 0 THEN r.key END,
       r.rel_type = 'm.replace' AND e.state_key IS NULL
         AND (json_typeof(r.content -> 'm.new_content') = 'object' OR e.type = 'm.room.encrypted')
FROM events e
CROSS JOIN LATERAL (
    SELECT c.content,
           CASE WHEN json_typeof(c.content -> 'm.relates_to' -> 'rel_type') = 'string'
                THEN c.content -> 'm.relates_to' ->> 'rel_type' END AS rel_type,
           CASE WHEN json_typeof(c.content -> 'm.relates_to' -> 'event_id') = 'string'
                THEN c.content -> 'm.relates_to' ->> 'event_id' END AS parent,
           CASE WHEN json_typeof(c.content -> 'm.relates_to' -> 'key') = 'string'
                THEN c.content -> 'm.relates_to' ->> 'key' END AS key
    FROM (SELECT CASE WHEN json_typeof(j.doc -> 'content') = 'object'
                      THEN j.doc -> 'content' END AS content
          FROM (SELECT replace(e.json, '\u0000', '\ufffd')::json AS doc) j) c
    WHERE json_typeof(c.content -> 'm.relates_to') = 'object'
) r
WHERE strpos(e.json, 'm.relates_to') > 0
  AND r.rel_type <> '' AND r.parent <> e.event_id
  AND (strpos(e.json, '\u0000') = 0
       OR strpos(r.rel_type || r.parent, U&'\FFFD') = 0)
ON CONFLICT (event_id) DO NOTHING;

INSERT INTO threads (room_id, root_id, latest_ordering)
SELECT room_id, relates_to_id, max(stream_ordering)
FROM event_relations WHERE rel_type = 'm.thread'
GROUP BY room_id, relates_to_id;
