-- tenir campaign store: streaming launch (issue 13), and a claim whose plan cannot go wrong.
--
-- Streaming launch. A launch writes its recipients and batches in chunks, one transaction
-- each: the first chunk (a few batches) is committed and claimable at once, the rest follows.
-- The campaign row says how far it got:
--   launch_state  writing | written | failed
--   requested     the recipients asked for (a group's size when the launch began)
--   recipients    the recipients written so far (every chunk adds its own)
--   launch_node   the node writing it; launch_heartbeat its last chunk (database clock)
--   launch_error  why the launch failed
-- A chunk is fenced like a batch write: it commits only while the campaign is still
-- (writing, launch_node); a writer whose launch was failed behind its back adds nothing.
--
-- Completion. A campaign completes when its launch is written and no batch is left open
-- (tenir_finish_batch for the last batch, or tenir_launch_written when the batches were
-- faster than the writer). A failed launch keeps dispatching what was written and ends
-- 'failed' (never 'completed') when its last written batch is done: what was sent is
-- recorded, and the campaign does not look complete.
--
-- Who fails a launch: its writer, when a chunk cannot be written; the watchdog leader, when
-- the writer is no longer a member of the cluster (it died) or its heartbeat is older than a
-- bound (it is stuck): tenir_fail_stalled_launches.
--
-- Campaigns launched before this migration were written in one transaction: 'written'.

ALTER TABLE campaigns DROP CONSTRAINT campaigns_state_check;
ALTER TABLE campaigns DROP CONSTRAINT campaigns_recipients_check;  -- 0 before the first chunk
ALTER TABLE campaigns
    ADD CONSTRAINT campaigns_state_check
        CHECK (state IN ('running', 'paused', 'completed', 'cancelled', 'failed')),
    ADD CONSTRAINT campaigns_recipients_check CHECK (recipients >= 0),
    ADD COLUMN requested        integer CHECK (requested > 0),
    ADD COLUMN launch_state     text NOT NULL DEFAULT 'written'
                                CHECK (launch_state IN ('writing', 'written', 'failed')),
    ADD COLUMN launch_node      text,
    ADD COLUMN launch_heartbeat timestamptz,
    ADD COLUMN launch_error     text;

-- Ends the campaign if nothing is left to do: completed when written, failed when its launch
-- failed. The caller holds the campaign row (FOR NO KEY UPDATE).
CREATE FUNCTION tenir_end_if_done(p_campaign bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    SELECT state, launch_state INTO c FROM campaigns WHERE id = p_campaign;
    IF c.state IN ('running', 'paused') AND c.launch_state <> 'writing'
       AND NOT EXISTS (SELECT 1 FROM batches WHERE campaign_id = p_campaign AND state <> 'done')
    THEN
        UPDATE campaigns
           SET state = CASE WHEN c.launch_state = 'failed' THEN 'failed' ELSE 'completed' END,
               completed_at = now()
         WHERE id = p_campaign;
    END IF;
END $$;

-- The writer has written every recipient.
CREATE FUNCTION tenir_launch_written(p_campaign bigint, p_node text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    SELECT launch_state, launch_node INTO c FROM campaigns WHERE id = p_campaign
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % not found', p_campaign USING ERRCODE = 'TN002';
    END IF;
    IF c.launch_state <> 'writing' OR c.launch_node IS DISTINCT FROM p_node THEN
        RETURN c.launch_state;
    END IF;
    UPDATE campaigns SET launch_state = 'written', launch_heartbeat = now()
     WHERE id = p_campaign;
    PERFORM tenir_end_if_done(p_campaign);
    RETURN 'written';
END $$;

-- Fails a launch still being written (by p_node, or by anyone when p_node is NULL).
CREATE FUNCTION tenir_fail_launch(p_campaign bigint, p_node text, p_error text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM campaigns WHERE id = p_campaign FOR NO KEY UPDATE;
    UPDATE campaigns SET launch_state = 'failed', launch_error = p_error
     WHERE id = p_campaign AND launch_state = 'writing'
       AND (p_node IS NULL OR launch_node = p_node);
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM tenir_end_if_done(p_campaign);
    RETURN true;
END $$;

-- The watchdog's check: launches whose writer is not among p_live (dead) and silent for
-- p_grace_s, or silent for p_stale_s whoever it is (stuck). Returns what it failed.
CREATE FUNCTION tenir_fail_stalled_launches(p_live text[], p_grace_s double precision,
                                            p_stale_s double precision)
RETURNS TABLE (out_campaign bigint, out_node text, out_written integer, out_requested integer)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT id, launch_node, launch_heartbeat FROM campaigns
              WHERE launch_state = 'writing'
                AND ((NOT launch_node = ANY (p_live)
                      AND launch_heartbeat < now() - make_interval(secs => p_grace_s))
                     OR launch_heartbeat < now() - make_interval(secs => p_stale_s))
    LOOP
        IF tenir_fail_launch(c.id, NULL, format(
                'launch writer %s %s; last chunk at %s', c.launch_node,
                CASE WHEN c.launch_node = ANY (p_live) THEN 'stuck' ELSE 'no longer a member' END,
                c.launch_heartbeat)) THEN
            RETURN QUERY SELECT id, launch_node, recipients, requested
                           FROM campaigns WHERE id = c.id;
        END IF;
    END LOOP;
END $$;

-- As in 0006, the end of a campaign through tenir_end_if_done (a campaign whose launch is
-- still writing does not complete when its written batches are done).
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
    PERFORM 1 FROM campaigns WHERE id = v_campaign FOR NO KEY UPDATE;
    PERFORM tenir_end_if_done(v_campaign);
    RETURN 'ok';
END $$;

-- The claim returns one row at most: said to the planner, so that the client's claim query
-- (which joins the claimed batch to its recipients) reads them through recipients_batch
-- whatever the table's statistics say. Without it, a campaign launched since the last
-- ANALYZE made every claim scan the whole recipients table (measured: 90 ms per claim at
-- 200,000 recipients, growing with the table).
ALTER FUNCTION tenir_claim_batch(text, double precision, text) ROWS 1;
ALTER FUNCTION tenir_claim_batch(text, double precision) ROWS 1;
ALTER FUNCTION tenir_claim_next(text, double precision, text, boolean) ROWS 1;
