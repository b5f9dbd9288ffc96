-- Events from other servers that are not part of the room's timeline: auth-chain and state
-- events learnt from a join or a state fetch ('outlier'), events that failed the auth checks
-- against their own auth events ('rejected'), and events that passed those but failed
-- against the room's current state ('soft_failed'). Readers of the timeline never see them;
-- event lookups (auth checks, /event, state) do.
CREATE TABLE event_outliers (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('outlier', 'rejected', 'soft_failed')),
    reason TEXT,
    -- the state before a soft-failed event, so that an event referencing it can be placed
    state_group_before BIGINT,
    received_ts BIGINT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX event_outliers_room ON event_outliers (room_id);

-- Backfilled history is older than anything a client has synced: it takes stream orderings
-- below zero, counting down, so it never shows in an incremental /sync and pages naturally
-- in /messages.
CREATE SEQUENCE backfill_ordering INCREMENT BY -1 START WITH -1 MAXVALUE -1;
