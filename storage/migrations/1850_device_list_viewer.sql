-- A device-list change that only one user may hear of: their own user-signing key, or
-- their signatures of other users' keys (only they see those in /keys/query). NULL:
-- every user sharing a room with user_id.
ALTER TABLE device_list_changes ADD COLUMN viewer TEXT;
