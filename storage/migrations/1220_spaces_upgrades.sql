-- GET /rooms/{roomId}/hierarchy: a paginated walk of a space tree. Each page's `next_batch`
-- names a row holding where the walk stopped (the rooms still queued, the rooms already
-- returned) and the query it belongs to, so that a token is refused for another user,
-- room, `max_depth` or `suggested_only`. Rows live a few minutes (homeserver/spaces).
CREATE TABLE space_hierarchy_sessions (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    suggested_only BOOLEAN NOT NULL,
    max_depth INTEGER NOT NULL,
    walk TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX space_hierarchy_sessions_created ON space_hierarchy_sessions (created_ts);

-- GET /rooms/{roomId}/timestamp_to_event (client and federation): the event of a room
-- closest to a time, by the time its sender's server gave it.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
