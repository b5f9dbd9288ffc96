-- Unread counts (storage/ephemeral.py unread_event_ids) look at a room's newest events
-- other than membership changes: a big room's joins would otherwise fill the window
-- every member's /sync scans after each message.
CREATE INDEX events_room_stream_not_member ON events (room_id, stream_ordering)
    WHERE type <> 'm.room.member';
