-- Full-text search (POST /_matrix/client/v3/search): one row per searchable field of an
-- event (m.room.message body, m.room.name name, m.room.topic topic), written in the
-- transaction that persists the event (storage/search.py). Rooms with m.room.encryption
-- in their state are never indexed, and a room that turns encryption on loses its rows.
-- A redaction deletes its target's rows.
CREATE TABLE event_search (
    event_id TEXT NOT NULL,
    -- 'content.body', 'content.name' or 'content.topic': the request's `keys`.
    key TEXT NOT NULL,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    -- to_tsvector in the configured language (search.language) at the time of writing.
    vector TSVECTOR NOT NULL,
    PRIMARY KEY (event_id, key)
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
