-- Stateless workers: which worker holds which session, and the agents deployed through the admin API.
-- Applied by duragent.stores.postgres.migrations inside one transaction (unqualified names: the
-- schema comes from search_path).

-- A row per session some worker has loaded. The advisory lock is what grants ownership; this row
-- only says "a worker took it": a row whose lock is free belongs to a worker that died, so another
-- worker adopts the session (duragent.cluster.ownership).
CREATE TABLE session_claims (
    session_id  text PRIMARY KEY,
    worker      text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- Agents deployed through the admin API, shared by every worker: each file of the agent folder by
-- its relative path. Workers mirror these rows into their local `agents.dynamic.path`.
CREATE TABLE dynamic_agents (
    name        text PRIMARY KEY,
    files       json NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT ''
);
