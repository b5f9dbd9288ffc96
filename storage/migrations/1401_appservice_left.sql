-- MSC3202 device_lists.left needs membership changes since the last transaction: how far
-- the events stream has been reported, beside device_list_pos.
ALTER TABLE appservice_state ADD COLUMN events_pos BIGINT;
