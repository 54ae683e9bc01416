-- When a live worker last vouched for the tries in flight (`pending`). A worker marks
-- the rows of the tries it holds every second, however long they wait for a verifier,
-- and `pending` counts only while this is recent: a worker killed mid-verification
-- stops marking, and its tries stop holding the identifier a few seconds later. Until
-- then `last_failure` (the last try taken) decided, which let the tries of a burst
-- waiting in a full pass-code backlog expire while still live.
ALTER TABLE pass_code_failures ADD COLUMN pending_seen timestamptz;
