-- Tries of a pass code are counted before they are verified (so that no burst gets
-- more than TUCANO_PASS_CODE_MAX_FAILURES wrong pass codes verified). `pending` holds
-- the tries taken and not yet verified; `failures` the wrong ones. A try is taken only
-- while failures + pending is below the limit; a right pass code sets `failures` to 0
-- and a row with neither is deleted. `last_failure` is the time of the last try taken:
-- once the window has passed since it, both counts start again (a worker that stopped
-- mid-verification leaves a pending try that ends with the window).
ALTER TABLE pass_code_failures
    DROP CONSTRAINT pass_code_failures_failures_check,
    ADD CONSTRAINT pass_code_failures_failures_check CHECK (failures >= 0),
    ADD COLUMN pending integer NOT NULL DEFAULT 0 CHECK (pending >= 0);
