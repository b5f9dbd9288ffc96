-- The push worker follows the events stream, out-of-band invites included: it reads
-- this table by stream position, without a user.
CREATE INDEX out_of_band_memberships_ordering ON out_of_band_memberships (stream_ordering);
