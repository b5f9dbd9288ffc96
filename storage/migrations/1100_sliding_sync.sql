-- Simplified sliding sync (MSC4186): room-list summaries kept at event persistence
-- (storage/room_summaries.py) and connections that survive restarts
-- (storage/sliding_sync.py).

-- Per room: what a room list shows and sorts by, updated in the transaction that
-- persists the room's events.
CREATE TABLE room_summaries (
    room_id TEXT PRIMARY KEY,
    -- stream ordering of the newest event of a type that moves a room up the list
    bump_stamp BIGINT NOT NULL DEFAULT 0,
    -- stream ordering of the newest event of any type
    last_ordering BIGINT NOT NULL DEFAULT 0,
    name TEXT,
    avatar TEXT,
    encrypted BOOLEAN NOT NULL DEFAULT FALSE,
    room_type TEXT,
    joined_count INTEGER NOT NULL DEFAULT 0,
    invited_count INTEGER NOT NULL DEFAULT 0
);

-- Per local user and room: their membership as current state has it.
CREATE TABLE user_room_summaries (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    ordering BIGINT NOT NULL,
    -- the invite said is_direct (m.direct account data says the rest)
    is_direct BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, room_id)
);

-- Backfill from what is stored. Content is read through `json` (not jsonb, which
-- refuses \u0000); an event whose text carries an escaped U+0000 is skipped for the
-- extracted fields rather than failing the migration. State learnt when joining over
-- federation is held outside the timeline (event_outliers).
INSERT INTO room_summaries (room_id, bump_stamp, last_ordering)
SELECT r.room_id,
       COALESCE((SELECT max(stream_ordering) FROM events e WHERE e.room_id = r.room_id
                 AND e.type IN ('m.room.create', 'm.room.message', 'm.room.encrypted',
                                'm.sticker', 'm.call.invite', 'm.poll.start',
                                'm.beacon_info')), 0),
       COALESCE((SELECT max(stream_ordering) FROM events e WHERE e.room_id = r.room_id), 0)
FROM rooms r;

UPDATE room_summaries s SET
    name = (SELECT CASE WHEN strpos(j.json, '\u0000') = 0
                 AND json_typeof(j.json::json -> 'content' -> 'name') = 'string'
                 THEN j.json::json -> 'content' ->> 'name' END FROM current_state c
            CROSS JOIN LATERAL (SELECT COALESCE(
                (SELECT json FROM events WHERE event_id = c.event_id),
                (SELECT json FROM event_outliers WHERE event_id = c.event_id)) AS json) j
            WHERE c.room_id = s.room_id AND c.type = 'm.room.name' AND c.state_key = ''),
    avatar = (SELECT CASE WHEN strpos(j.json, '\u0000') = 0
                 AND json_typeof(j.json::json -> 'content' -> 'url') = 'string'
                 THEN j.json::json -> 'content' ->> 'url' END FROM current_state c
              CROSS JOIN LATERAL (SELECT COALESCE(
                (SELECT json FROM events WHERE event_id = c.event_id),
                (SELECT json FROM event_outliers WHERE event_id = c.event_id)) AS json) j
              WHERE c.room_id = s.room_id AND c.type = 'm.room.avatar' AND c.state_key = ''),
    encrypted = EXISTS (SELECT 1 FROM current_state c
                        WHERE c.room_id = s.room_id AND c.type = 'm.room.encryption'
                          AND c.state_key = ''),
    room_type = (SELECT CASE WHEN strpos(j.json, '\u0000') = 0
                 AND json_typeof(j.json::json -> 'content' -> 'type') = 'string'
                 THEN j.json::json -> 'content' ->> 'type' END FROM current_state c
                 CROSS JOIN LATERAL (SELECT COALESCE(
                (SELECT json FROM events WHERE event_id = c.event_id),
                (SELECT json FROM event_outliers WHERE event_id = c.event_id)) AS json) j
                 WHERE c.room_id = s.room_id AND c.type = 'm.room.create' AND c.state_key = ''),
    joined_count = (SELECT count(*) FROM current_state c WHERE c.room_id = s.room_id
                    AND c.type = 'm.room.member' AND c.membership = 'join'),
    invited_count = (SELECT count(*) FROM current_state c WHERE c.room_id = s.room_id
                     AND c.type = 'm.room.member' AND c.membership = 'invite');

INSERT INTO user_room_summaries (user_id, room_id, membership, event_id, sender, ordering,
                                 is_direct)
SELECT c.state_key, c.room_id, c.membership, c.event_id, e.sender, e.stream_ordering,
       CASE WHEN c.membership = 'invite' AND strpos(e.json, '\u0000') = 0
            THEN COALESCE((e.json::json -> 'content' ->> 'is_direct') = 'true', FALSE)
            ELSE FALSE END
FROM current_state c JOIN events e ON e.event_id = c.event_id
WHERE c.type = 'm.room.member' AND c.membership IS NOT NULL
  AND c.state_key IN (SELECT user_id FROM users);

CREATE INDEX user_room_summaries_room ON user_room_summaries (room_id);

-- A connection of a device (MSC4186 conn_id); deleted with nothing else depending on it.
CREATE TABLE sliding_sync_connections (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    last_used_ts BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id)
);

-- Each response's `pos`: the stream positions it covered and a digest of what its lists
-- showed (counts and room ids: an answer whose lists did not move is not news). A request with pos P deletes the positions before P (the client has moved
-- past them) and those after P (answers the client never used).
CREATE TABLE sliding_sync_positions (
    pos BIGSERIAL PRIMARY KEY,
    connection_id BIGINT NOT NULL REFERENCES sliding_sync_connections (id) ON DELETE CASCADE,
    tokens TEXT NOT NULL,
    lists TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX sliding_sync_positions_connection ON sliding_sync_positions (connection_id);

-- What a connection has sent of each room, one row per position that sent it: the room
-- as of pos P is its newest row at or below P.
CREATE TABLE sliding_sync_rooms (
    connection_id BIGINT NOT NULL REFERENCES sliding_sync_connections (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    pos BIGINT NOT NULL,
    -- the events stream position the room was sent up to
    sent_upto BIGINT NOT NULL,
    membership TEXT NOT NULL,
    -- the required_state and timeline_limit it was sent with (canonical JSON)
    config TEXT NOT NULL,
    PRIMARY KEY (connection_id, room_id, pos)
);
