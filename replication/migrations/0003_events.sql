-- What the watchdog (and later drills and switchovers) did, one row per decision, with its
-- timestamp and the sentence it said. Evidence for auditors; hash-chaining comes with drills.
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]*$'),
    node        text NOT NULL,
    site        text NOT NULL,
    campaign_id bigint,
    sentence    text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_at ON events (at);
