-- Housekeeping prunes message transaction IDs by age (homeserver/housekeeping, event_txns).
CREATE INDEX event_txns_created ON event_txns (created_ts);
