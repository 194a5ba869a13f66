-- Requests for a session another worker runs: an approval, a cancel, a message while its turn
-- runs. The worker the HTTP request reached writes a row; the session's owner takes it, serves
-- it and writes the answer its client gets (duragent.cluster.requests).
-- Applied by duragent.stores.postgres.migrations inside one transaction (unqualified names: the
-- schema comes from search_path).
CREATE TABLE session_requests (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL,
    action      text NOT NULL,
    body        json NOT NULL,
    asked_by    text NOT NULL,
    asked_at    timestamptz NOT NULL DEFAULT now(),
    -- The owner that took it, and the backend pid of its lock connection: while that backend is
    -- gone and no answer is written, the owner stopped before answering.
    taken_by    text,
    taker_pid   integer,
    answer      json,
    answered_at timestamptz
);
CREATE INDEX session_requests_by_age ON session_requests (asked_at);
