-- A local user's membership in a room this server does not participate in: an invite or a
-- knock received over federation, or the rejection / retraction we sent through another
-- server. The event itself is an outlier (event_outliers); this row gives it a position in
-- the events stream so that /sync shows it, with the stripped room state the user sees.
-- Only the latest such membership per user and room matters: once the server joins the
-- room, the room's own state (current_state) is newer and wins.
CREATE TABLE out_of_band_memberships (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL CHECK (membership IN ('invite', 'knock', 'leave')),
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    room_version TEXT NOT NULL,
    -- JSON array of stripped state events (type, state_key, sender, content)
    stripped_state TEXT,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX out_of_band_memberships_stream ON out_of_band_memberships (user_id, stream_ordering);
