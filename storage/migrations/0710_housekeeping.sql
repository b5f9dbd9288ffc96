-- Housekeeping: what the scheduled tasks of homeserver/housekeeping need.

-- When each task last ran anywhere in the cluster: with the task's advisory lock, this
-- makes a task run once per period however many processes share the database.
CREATE TABLE housekeeping_runs (
    task TEXT PRIMARY KEY,
    last_run_ts BIGINT NOT NULL
);

-- device_list_changes rows get a time, so that the retention is a duration; rows that
-- existed before count as written now.
ALTER TABLE device_list_changes
    ADD COLUMN created_ts BIGINT NOT NULL DEFAULT (floor(extract(epoch FROM now()) * 1000))::bigint;

-- Per stream, every row at or below `pruned_to` has been deleted. A reader asked for
-- changes after a position below it cannot list them and must answer "everything".
CREATE TABLE pruned_streams (
    stream TEXT PRIMARY KEY,
    pruned_to BIGINT NOT NULL
);

CREATE INDEX to_device_txns_created ON to_device_txns (created_ts);
CREATE INDEX event_outliers_rejected ON event_outliers (received_ts) WHERE status = 'rejected';
-- Presence time-outs look only at users who are not offline yet.
CREATE INDEX presence_not_offline ON presence (last_active_ts) WHERE state <> 'offline';

-- POST /account/deactivate with erase: the user's events still to be rewritten redacted.
-- `after_ordering` is the stream ordering done so far (backfilled events are negative, so
-- it starts at the smallest BIGINT); the row goes when nothing is left.
CREATE TABLE user_erasures (
    user_id TEXT PRIMARY KEY,
    after_ordering BIGINT NOT NULL DEFAULT -9223372036854775808,
    requested_ts BIGINT NOT NULL
);
