-- Schedules for stateless workers: the documents every worker reads, and their runs.
-- Applied by duragent.stores.postgres.migrations inside one transaction (unqualified names: the
-- schema comes from search_path).

-- One row per schedule: the same document a `.duragent/schedules/<id>.yaml` file holds.
CREATE TABLE schedules (
    id          text PRIMARY KEY,
    agent       text NOT NULL,
    document    json NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Run history. A `started` row is the claim of one firing slot: the unique index lets exactly
-- one worker insert it, so each due run fires once however many workers see it due.
CREATE TABLE schedule_runs (
    schedule_id text NOT NULL,
    n           bigserial,
    slot        timestamptz NOT NULL,
    status      text NOT NULL,
    record      json NOT NULL,
    PRIMARY KEY (schedule_id, n)
);
CREATE UNIQUE INDEX schedule_runs_claim ON schedule_runs (schedule_id, slot) WHERE status = 'started';
