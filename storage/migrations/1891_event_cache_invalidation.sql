-- Cross-process invalidation of the event cache (storage/events.py EventCache): every
-- process keeps the events it read in memory, and an event's stored form changes after
-- it was written when it is redacted (a redactions row, its JSON pruned), erased or
-- expired (its JSON rewritten by the housekeeping), purged, or an outlier is rejected,
-- pruned or reaches the timeline. Whichever process commits that, every process hears
-- ["e", event_id] on hs_invalidate (homeserver/user_cache.py) and drops its copy: with
-- nginx's roles one worker persists every redaction and the others answer the /syncs.

CREATE FUNCTION hs_invalidate_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'redactions' THEN
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('hs_invalidate', json_build_array('e', OLD.redacts)::text);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('hs_invalidate', json_build_array('e', NEW.redacts)::text);
        END IF;
    ELSE
        PERFORM pg_notify('hs_invalidate', json_build_array('e', OLD.event_id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER redactions_invalidate AFTER INSERT OR UPDATE OR DELETE ON redactions
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_event();

-- New events need none (an event is cached once read); rewritten and deleted ones do.
CREATE TRIGGER events_invalidate AFTER UPDATE OF json, unsigned_json OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_event();

CREATE TRIGGER event_outliers_invalidate AFTER UPDATE OR DELETE ON event_outliers
    FOR EACH ROW EXECUTE FUNCTION hs_invalidate_event();
