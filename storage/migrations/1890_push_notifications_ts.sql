-- The housekeeping task `push_notifications` deletes rows by age. Rows arrive in `ts`
-- order, so a BRIN index finds the old ones at almost no cost per insert (one row per
-- notified member of every message).
CREATE INDEX push_notifications_ts ON push_notifications USING brin (ts);
