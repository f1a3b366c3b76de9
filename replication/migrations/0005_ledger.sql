-- The continuity ledger: append-only and hash-chained, the events table folded into it.
--
-- An entry is what the application inserts as `payload` (UTF-8 JSON: kind, actor, node, site,
-- campaign_id, sentence, details). Everything else is set by the BEFORE INSERT trigger, under
-- the row lock of the one-row `ledger_head`, so concurrent appends from every node form one
-- chain whatever the client sends:
--   seq        0, 1, 2... without gaps (a rolled-back append rolls back the head too);
--   at, at_us  clock_timestamp() at append (microseconds since the epoch);
--   prev_hash  the previous entry's entry_hash (32 zero bytes for the first);
--   entry_hash SHA-256(0x00 || 'tenir-ledger/v1\n' || seq (8 bytes, big endian) ||
--              at_us (8 bytes) || prev_hash || payload): the RFC 6962 leaf hash of the entry.
-- UPDATE, DELETE and TRUNCATE are refused by triggers for every role (the schema owner
-- included); the application role is granted only SELECT and INSERT (replication/grants.py).
CREATE TABLE ledger (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    at_us      bigint NOT NULL,
    kind       text NOT NULL CONSTRAINT ledger_kind_check CHECK (kind ~ '^[a-z][a-z0-9_.]*$'),
    payload    bytea NOT NULL,
    doc        jsonb NOT NULL CONSTRAINT ledger_doc_object CHECK (jsonb_typeof(doc) = 'object'),
    prev_hash  bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    entry_hash bytea NOT NULL CHECK (octet_length(entry_hash) = 32)
);
CREATE INDEX ledger_at ON ledger (at);
CREATE INDEX ledger_kind ON ledger (kind, seq);

CREATE TABLE ledger_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    size bigint NOT NULL,
    head bytea NOT NULL
);
INSERT INTO ledger_head (one, size, head) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

-- Signed checkpoints (c2sp signed notes, with the witness's cosignature), append-only too.
CREATE TABLE ledger_checkpoints (
    size      bigint PRIMARY KEY CHECK (size > 0),
    root      bytea NOT NULL CHECK (octet_length(root) = 32),
    note      text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION tenir_ledger_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    h record;
BEGIN
    SELECT size, head INTO h FROM public.ledger_head WHERE one FOR UPDATE;
    NEW.seq := h.size;
    NEW.at := clock_timestamp();
    NEW.at_us := (extract(epoch FROM NEW.at) * 1000000)::bigint;
    NEW.doc := convert_from(NEW.payload, 'UTF8')::jsonb;
    NEW.kind := NEW.doc->>'kind';
    NEW.prev_hash := h.head;
    NEW.entry_hash := sha256('\x00'::bytea || convert_to('tenir-ledger/v1' || chr(10), 'UTF8')
                             || int8send(NEW.seq) || int8send(NEW.at_us) || h.head
                             || NEW.payload);
    UPDATE public.ledger_head SET size = h.size + 1, head = NEW.entry_hash WHERE one;
    RETURN NEW;
END
$$;

CREATE FUNCTION tenir_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % table is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'TN005';
END
$$;

CREATE TRIGGER ledger_chain BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION tenir_ledger_chain();
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION tenir_append_only();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION tenir_append_only();
CREATE TRIGGER ledger_head_kept BEFORE DELETE OR TRUNCATE ON ledger_head
    FOR EACH STATEMENT EXECUTE FUNCTION tenir_append_only();

-- The first entry says where the ledger starts; then the events recorded so far, in order
-- (their own time kept as recorded_at: the ledger attests when it learned of them).
INSERT INTO ledger (payload) SELECT convert_to(jsonb_build_object(
    'kind', 'ledger.opened', 'actor', 'migration:0005_ledger', 'node', '', 'site', '',
    'campaign_id', NULL, 'details', jsonb_build_object('copied_events', (SELECT count(*) FROM events)),
    'sentence', 'the continuity ledger opened: append-only, hash-chained, '
                || (SELECT count(*) FROM events) || ' earlier events copied from the events table'
    )::text, 'UTF8');
INSERT INTO ledger (payload)
SELECT convert_to(jsonb_build_object(
    'kind', kind, 'actor', coalesce(details->>'by', 'node:' || node), 'node', node, 'site', site,
    'campaign_id', campaign_id, 'sentence', sentence, 'details', details,
    'recorded_at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text, 'UTF8')
FROM events ORDER BY id;
DROP TABLE events;

-- What read the events table still reads it (tenir status, the lab tests, the benchmarks).
CREATE VIEW events AS
SELECT seq AS id, at, kind, doc->>'node' AS node, doc->>'site' AS site,
       (doc->>'campaign_id')::bigint AS campaign_id, doc->>'sentence' AS sentence,
       coalesce(doc->'details', '{}'::jsonb) AS details, doc->>'actor' AS actor
FROM ledger;
