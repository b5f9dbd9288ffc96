-- Notifications: the events whose push rules said "notify" for a local user, kept for
-- GET /notifications and sent to the user's http pushers.
CREATE TABLE push_notifications (
    user_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
);

-- The one row of the push worker: the events stream position evaluated up to, and the
-- lease that lets only one process evaluate and deliver at a time.
CREATE TABLE push_worker_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ts BIGINT NOT NULL DEFAULT 0
);
