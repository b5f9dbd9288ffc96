-- MSC2228 self-destructing events: when each event's content is to be redacted (its
-- `org.matrix.self_destruct_after`), written with the event when the feature is on; the
-- housekeeping task `self_destruct` rewrites the event and deletes the row.
CREATE TABLE event_expiry (
    event_id TEXT PRIMARY KEY,
    expiry_ts BIGINT NOT NULL
);
CREATE INDEX event_expiry_ts ON event_expiry (expiry_ts);
