-- The scheduler's memory, shared by every replica: when each job is next due and how its last run
-- went. Which replica runs a due job is decided by a session advisory lock, not by this table, so a
-- runner that dies frees the job at once; next_run_at moves only when a run finishes, so the job a
-- dead runner left is due again at the next tick of any replica. A shared table without triggers:
-- on Citus it stays a local table of the coordinator (or a reference table).
CREATE TABLE scheduled_job (
    name            text PRIMARY KEY,
    next_run_at     timestamptz NOT NULL DEFAULT now(),
    last_started_at timestamptz,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    -- What the last finished run did (members, holds, keys ...), and who ran it.
    last_items      bigint NOT NULL DEFAULT 0 CHECK (last_items >= 0),
    last_runner     text NOT NULL DEFAULT '',
    last_error      text NOT NULL DEFAULT ''
);
