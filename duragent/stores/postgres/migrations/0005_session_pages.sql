-- Pages of the session listing (GET /api/v1/sessions): newest activity first, a tie by the greater
-- id first, ids compared byte by byte (COLLATE "C", the order Python and the filesystem store use,
-- whatever the database's collation). A page walks one of these indexes from its cursor and stops
-- after its LIMIT rows, however many sessions there are.
-- Applied by duragent.stores.postgres.migrations inside one transaction (unqualified names: the
-- schema comes from search_path). Building an index blocks writes to `sessions` while it runs:
-- about a second per million sessions.
CREATE INDEX IF NOT EXISTS sessions_by_activity_and_id
    ON sessions (updated_at DESC, id COLLATE "C" DESC);
CREATE INDEX IF NOT EXISTS sessions_by_agent ON sessions (agent, updated_at DESC, id COLLATE "C" DESC);
-- The listing's first order (ties by the smaller id first): no query walks it any more.
DROP INDEX IF EXISTS sessions_by_activity;
