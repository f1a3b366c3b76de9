-- tenir campaign store: the claim log (evidence for the chaos checkers), and the test-only
-- switch that disables fencing.
--
-- claim_log. One row per event of a batch's ownership, appended in the same transaction as the
-- event itself (so it is exactly as durable, and never ahead of or behind it):
--   claim    a claim (tenir_claim_next); prev_owner/prev_epoch say whose expired lease it took
--   renew    a lease renewed (lease_until: the new deadline)
--   write    an outcome flush accepted (rows; current_epoch: the batch's epoch when accepted)
--   finish   the batch marked done
--   release  the batch given back by its holder
--   move     the batch put back to pending by the watchdog (node: the dead holder; site: the
--            site it is reserved for, if any)
-- The time is clock_timestamp() (the moment of the row, not of the transaction start). One
-- row per claim, renewal or flush: a few rows per batch, nothing per recipient. Readers page
-- by id; ids are taken at insert and transactions commit out of order by a few milliseconds,
-- so a reader that follows a live log leaves the last seconds for its next read (see
-- chaos/pg_observer.py). UPDATE, DELETE and TRUNCATE are refused by a trigger.
--
-- The unsafe switch. tenir_unsafe_switch(name) is true only when a table
-- public.tenir_unsafe_switches exists, is OWNED BY A SUPERUSER, is readable by the caller, and
-- has a row (name, true). Migrations do not create it; the application role can neither create
-- a superuser-owned table nor write to one it was only granted SELECT on, so no application
-- code path and no API call can turn a switch on. A test does, as the superuser:
--   CREATE TABLE public.tenir_unsafe_switches (name text PRIMARY KEY, enabled boolean);
--   GRANT SELECT ON public.tenir_unsafe_switches TO tenir;
--   INSERT INTO public.tenir_unsafe_switches VALUES ('fencing_disabled', true);
-- 'fencing_disabled' makes tenir_fence accept a stale caller's write (with a WARNING in the
-- server log and a claim_log row carrying the real current_epoch): the broken behaviour the
-- fencing checker must catch. Nothing else reads a switch.

CREATE TABLE claim_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind          text NOT NULL
                  CHECK (kind IN ('claim', 'renew', 'write', 'finish', 'release', 'move')),
    batch_id      bigint NOT NULL,
    epoch         bigint NOT NULL,
    node          text NOT NULL,
    site          text,
    lease_until   timestamptz,
    prev_owner    text,
    prev_epoch    bigint,
    current_epoch bigint,
    rows          integer
);

-- tenir_append_only() comes with the ledger (0005): the claim log refuses the same way.
CREATE TRIGGER claim_log_append_only BEFORE UPDATE OR DELETE ON claim_log
    FOR EACH ROW EXECUTE FUNCTION tenir_append_only();
CREATE TRIGGER claim_log_no_truncate BEFORE TRUNCATE ON claim_log
    FOR EACH STATEMENT EXECUTE FUNCTION tenir_append_only();

CREATE FUNCTION tenir_unsafe_switch(p_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_table regclass := to_regclass('public.tenir_unsafe_switches');
    v_on boolean;
BEGIN
    IF v_table IS NULL THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
     WHERE c.oid = v_table AND r.rolsuper;
    IF NOT FOUND OR NOT has_table_privilege(v_table, 'SELECT') THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT coalesce(bool_or(enabled), false) FROM public.tenir_unsafe_switches'
            ' WHERE name = $1' INTO v_on USING p_name;
    RETURN v_on;
END $$;

-- As in 0002, plus: an accepted outcome flush is logged ('write'), and the unsafe switch.
CREATE OR REPLACE FUNCTION tenir_fence(p_batch bigint, p_epoch bigint, p_node text,
                                       p_operation text, p_rows integer DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    b record;
BEGIN
    SELECT id, campaign_id, state, owner, owner_site, epoch INTO b
      FROM batches WHERE id = p_batch FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % not found', p_batch USING ERRCODE = 'TN002';
    END IF;
    IF b.state = 'claimed' AND b.owner = p_node AND b.epoch = p_epoch THEN
        IF p_operation = 'record_outcomes' THEN
            INSERT INTO claim_log (kind, batch_id, epoch, node, site, current_epoch, rows)
            VALUES ('write', p_batch, p_epoch, p_node, b.owner_site, b.epoch, p_rows);
        END IF;
        RETURN b.campaign_id;
    END IF;
    IF tenir_unsafe_switch('fencing_disabled') THEN
        RAISE WARNING 'tenir: FENCING DISABLED by the test switch: % of batch % at epoch % by % '
                      'accepted although the batch is at epoch % (%)',
                      p_operation, p_batch, p_epoch, p_node, b.epoch, b.state;
        IF p_operation = 'record_outcomes' THEN
            INSERT INTO claim_log (kind, batch_id, epoch, node, site, current_epoch, rows)
            VALUES ('write', p_batch, p_epoch, p_node, NULL, b.epoch, p_rows);
        END IF;
        RETURN b.campaign_id;
    END IF;
    INSERT INTO fencing_rejections (operation, batch_id, epoch, node, current_epoch,
                                    current_owner, current_state, rows_refused)
    VALUES (p_operation, p_batch, p_epoch, p_node, b.epoch, b.owner, b.state, p_rows);
    RETURN NULL;
END $$;

-- As in 0004, plus the 'claim' row (with whose expired claim it took over, if any).
CREATE OR REPLACE FUNCTION tenir_claim_next(p_node text, p_lease_s double precision,
                                            p_site text, p_honour boolean)
RETURNS TABLE (out_batch_id bigint, out_campaign_id bigint, out_epoch bigint,
               out_lease_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_batch bigint;
    v_prev_owner text;
    v_prev_epoch bigint;
BEGIN
    FOR c IN SELECT id FROM campaigns WHERE state = 'running' ORDER BY priority, id LOOP
        SELECT b.id, b.owner, b.epoch INTO v_batch, v_prev_owner, v_prev_epoch FROM batches b
         WHERE b.campaign_id = c.id AND b.state <> 'done'
           AND (b.state = 'pending' OR b.lease_until < now())
           AND (NOT p_honour OR b.reserved_until IS NULL OR b.reserved_until <= now()
                OR coalesce(b.reserved_site = p_site, false))
         ORDER BY b.id
         LIMIT 1
         FOR NO KEY UPDATE SKIP LOCKED;
        IF FOUND THEN
            RETURN QUERY
            WITH u AS (
                UPDATE batches b
                   SET state = 'claimed', owner = p_node, owner_site = p_site,
                       epoch = b.epoch + 1,
                       lease_until = now() + make_interval(secs => p_lease_s),
                       claimed_at = now(), reserved_site = NULL, reserved_until = NULL
                 WHERE b.id = v_batch
                RETURNING b.id, b.campaign_id, b.epoch, b.lease_until
            ), logged AS (
                INSERT INTO claim_log (kind, batch_id, epoch, node, site, lease_until,
                                       prev_owner, prev_epoch)
                SELECT 'claim', u.id, u.epoch, p_node, p_site, u.lease_until, v_prev_owner,
                       v_prev_epoch FROM u
            )
            SELECT u.id, u.campaign_id, u.epoch, u.lease_until FROM u;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- As in 0002, plus the 'renew' row with the new deadline.
CREATE OR REPLACE FUNCTION tenir_renew_batch(p_batch bigint, p_epoch bigint, p_node text,
                                             p_lease_s double precision)
RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    v_until timestamptz;
    v_site text;
    v_epoch bigint;
BEGIN
    IF tenir_fence(p_batch, p_epoch, p_node, 'renew_batch') IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE batches SET lease_until = now() + make_interval(secs => p_lease_s)
     WHERE id = p_batch RETURNING lease_until, owner_site, epoch INTO v_until, v_site, v_epoch;
    INSERT INTO claim_log (kind, batch_id, epoch, node, site, lease_until, current_epoch)
    VALUES ('renew', p_batch, p_epoch, p_node, v_site, v_until, v_epoch);
    RETURN v_until;
END $$;

-- As in 0004, plus the 'release' row.
CREATE OR REPLACE FUNCTION tenir_release_batch(p_batch bigint, p_epoch bigint, p_node text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_site text;
    v_epoch bigint;
BEGIN
    IF tenir_fence(p_batch, p_epoch, p_node, 'release_batch') IS NULL THEN
        RETURN 'stale';
    END IF;
    SELECT owner_site, epoch INTO v_site, v_epoch FROM batches WHERE id = p_batch;
    UPDATE batches SET state = 'pending', owner = NULL, owner_site = NULL, lease_until = NULL
     WHERE id = p_batch;
    INSERT INTO claim_log (kind, batch_id, epoch, node, site, current_epoch)
    VALUES ('release', p_batch, p_epoch, p_node, v_site, v_epoch);
    RETURN 'ok';
END $$;

-- As in 0002, plus the 'finish' row once the batch is done.
CREATE OR REPLACE FUNCTION tenir_finish_batch(p_batch bigint, p_epoch bigint, p_node text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_campaign bigint;
    v_state text;
    v_pending bigint;
    v_site text;
    v_epoch bigint;
BEGIN
    PERFORM 1 FROM batches
     WHERE id = p_batch AND state = 'done' AND owner = p_node AND epoch = p_epoch;
    IF FOUND THEN
        RETURN 'ok';
    END IF;
    v_campaign := tenir_fence(p_batch, p_epoch, p_node, 'finish_batch');
    IF v_campaign IS NULL THEN
        RETURN 'stale';
    END IF;
    SELECT state INTO v_state FROM campaigns WHERE id = v_campaign;
    IF v_state <> 'cancelled' THEN
        SELECT count(*) INTO v_pending FROM recipients
         WHERE batch_id = p_batch AND state = 'pending';
        IF v_pending > 0 THEN
            RETURN 'pending ' || v_pending;
        END IF;
    END IF;
    UPDATE batches SET state = 'done', lease_until = NULL, finished_at = now()
     WHERE id = p_batch RETURNING owner_site, epoch INTO v_site, v_epoch;
    INSERT INTO claim_log (kind, batch_id, epoch, node, site, current_epoch)
    VALUES ('finish', p_batch, p_epoch, p_node, v_site, v_epoch);
    SELECT state INTO v_state FROM campaigns WHERE id = v_campaign FOR NO KEY UPDATE;
    IF v_state IN ('running', 'paused')
       AND NOT EXISTS (SELECT 1 FROM batches WHERE campaign_id = v_campaign AND state <> 'done')
    THEN
        UPDATE campaigns SET state = 'completed', completed_at = now() WHERE id = v_campaign;
    END IF;
    RETURN 'ok';
END $$;
