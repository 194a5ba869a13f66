-- Duragent's first schema: session logs, snapshots and memory.
-- Applied by duragent.stores.postgres.migrations inside one transaction, in the schema chosen by
-- the URL (search_path), so table names here are unqualified.

-- One row per session, kept current in the same transaction as every append.
CREATE TABLE sessions (
    id          text PRIMARY KEY,
    agent       text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'active',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    last_seq    bigint NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_activity ON sessions (updated_at DESC, id);

-- The append-only event log. The primary key is the guarantee that two writers can never
-- store the same seq of one session. Payloads are `json` (not `jsonb`): it keeps the text as
-- written (key order) and accepts "\u0000", which tool output may contain.
CREATE TABLE events (
    session_id  text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    id          text NOT NULL,
    ts          timestamptz NOT NULL,
    type        text NOT NULL,
    payload     json NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- The latest snapshot of each session (state.yaml on files).
CREATE TABLE snapshots (
    session_id  text PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    last_seq    bigint NOT NULL,
    snapshot    json NOT NULL,
    saved_at    timestamptz NOT NULL
);

-- Every snapshot that was replaced: what git history gives state.yaml on files.
CREATE TABLE snapshot_history (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL,
    last_seq    bigint NOT NULL,
    snapshot    json NOT NULL,
    saved_at    timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX snapshot_history_by_session ON snapshot_history (session_id, id);

-- Daily memory: the Markdown of each day exactly as the filesystem store would write it ...
CREATE TABLE memory_days (
    agent       text NOT NULL,
    day         date NOT NULL,
    markdown    text NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (agent, day)
);

-- ... and every entry put into it, with its provenance, in writing order (id).
CREATE TABLE memory_entries (
    id          bigserial PRIMARY KEY,
    agent       text NOT NULL,
    day         date NOT NULL,
    section     text NOT NULL,
    text        text NOT NULL,
    created_at  timestamptz NOT NULL,
    source      text
);
CREATE INDEX memory_entries_by_day ON memory_entries (agent, day, id);

-- MEMORY.md of each agent, and the versions it replaced.
CREATE TABLE memory_long_term (
    agent       text PRIMARY KEY,
    text        text NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE memory_long_term_history (
    id          bigserial PRIMARY KEY,
    agent       text NOT NULL,
    text        text NOT NULL,
    updated_at  timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);

-- The world memory shared by every agent (memory/world/<topic>.md), and replaced versions.
CREATE TABLE memory_world (
    topic       text PRIMARY KEY,
    text        text NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE memory_world_history (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    text        text NOT NULL,
    updated_at  timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
