-- The text index takes new rows into a pending list that every search reads in full
-- until it is merged (by vacuum, or by the insert that fills it). At PostgreSQL's default
-- of 4 MB, a search for a word in 20 of 100,000 messages took 10 ms reading the list and
-- 0.1 ms once merged, and the insert that filled it merged 4 MB while a client waited.
-- 256 kB bounds both.
ALTER INDEX event_search_vector SET (gin_pending_list_limit = 256);
