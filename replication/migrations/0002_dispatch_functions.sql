-- tenir campaign store: the server-side functions where the database itself must decide.
--
-- Fencing. Every write of a batch's holder (record outcomes, renew, finish, release) goes through
-- tenir_fence(), which locks the batch row and compares (state, owner, epoch) with the caller's.
-- A stale caller is REFUSED: the function writes nothing of the caller's data and returns a
-- status ('stale') instead of raising. Raising would roll back the rejection row inserted in
-- the same transaction; returning lets the refusal and its evidence commit together, in the
-- same round trip, so that no refusal goes uncounted even if the client dies right after.
-- The client turns 'stale' into store_api.StaleEpoch after the commit.
--
-- Custom SQLSTATEs raised here (the client maps them to store_api errors):
--   TN002  unknown batch                                   -> NotFound
--   TN003  an outcome outside the batch, or a reference reused for another recipient
--                                                           -> InvalidInput
--   TN004  outcome arrays of different lengths              -> InvalidInput

-- Attempt states only move up: sent < delivered, failed < acknowledged.
CREATE FUNCTION tenir_state_rank(s text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE s WHEN 'sent' THEN 0 WHEN 'acknowledged' THEN 2 ELSE 1 END $$;

-- Locks the batch and returns its campaign id when (epoch, node) is its current claim; otherwise
-- records the refusal and returns NULL.
CREATE FUNCTION tenir_fence(p_batch bigint, p_epoch bigint, p_node text, p_operation text,
                            p_rows integer DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    b record;
BEGIN
    SELECT id, campaign_id, state, owner, epoch INTO b
      FROM batches WHERE id = p_batch FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % not found', p_batch USING ERRCODE = 'TN002';
    END IF;
    IF b.state = 'claimed' AND b.owner = p_node AND b.epoch = p_epoch THEN
        RETURN b.campaign_id;
    END IF;
    INSERT INTO fencing_rejections (operation, batch_id, epoch, node, current_epoch,
                                    current_owner, current_state, rows_refused)
    VALUES (p_operation, p_batch, p_epoch, p_node, b.epoch, b.owner, b.state, p_rows);
    RETURN NULL;
END $$;

-- Hands one batch to p_node: the first pending batch (or claimed batch whose lease expired) of
-- the running campaigns, by campaign priority then age, skipping batches locked by concurrent
-- claimers. Campaigns are tried one at a time so that no batch is locked without being claimed.
CREATE FUNCTION tenir_claim_batch(p_node text, p_lease_s double precision)
RETURNS TABLE (out_batch_id bigint, out_campaign_id bigint, out_epoch bigint,
               out_lease_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_batch bigint;
BEGIN
    FOR c IN SELECT id FROM campaigns WHERE state = 'running' ORDER BY priority, id LOOP
        SELECT b.id INTO v_batch FROM batches b
         WHERE b.campaign_id = c.id AND b.state <> 'done'
           AND (b.state = 'pending' OR b.lease_until < now())
         ORDER BY b.id
         LIMIT 1
         FOR NO KEY UPDATE SKIP LOCKED;
        IF FOUND THEN
            RETURN QUERY
            UPDATE batches b
               SET state = 'claimed', owner = p_node, epoch = b.epoch + 1,
                   lease_until = now() + make_interval(secs => p_lease_s), claimed_at = now()
             WHERE b.id = v_batch
            RETURNING b.id, b.campaign_id, b.epoch, b.lease_until;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- Writes one flush of outcomes. Attempt arrays (a_*) have one entry per distinct reference;
-- recipient arrays (r_*) one entry per distinct recipient: the furthest (step, attempt + 1)
-- reached, and the first final outcome of this flush (r_final_state NULL when none).
-- A recipient's final outcome is written only while it is pending: the first final wins
-- (only an acknowledgement, below and in tenir_record_ack, may upgrade it).
-- Returns 'ok', or 'stale' when refused (nothing written but the rejection).
CREATE FUNCTION tenir_record_outcomes(
    p_batch bigint, p_epoch bigint, p_node text,
    a_reference text[], a_recipient bigint[], a_channel text[], a_carrier text[],
    a_state text[], a_site text[], a_step integer[], a_attempt integer[],
    a_carrier_message_id text[], a_detail text[], a_at timestamptz[],
    r_id bigint[], r_step integer[], r_next_attempt integer[], r_final_state text[],
    r_final_channel text[], r_final_site text[], r_final_reference text[], r_final_at timestamptz[])
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_campaign bigint;
    v_n integer := coalesce(cardinality(a_reference), 0);
    v_m integer := coalesce(cardinality(r_id), 0);
    v_written bigint;
    v_bad text;
BEGIN
    IF v_n <> coalesce(cardinality(a_recipient), 0) OR v_n <> coalesce(cardinality(a_channel), 0)
       OR v_n <> coalesce(cardinality(a_carrier), 0) OR v_n <> coalesce(cardinality(a_state), 0)
       OR v_n <> coalesce(cardinality(a_site), 0) OR v_n <> coalesce(cardinality(a_step), 0)
       OR v_n <> coalesce(cardinality(a_attempt), 0)
       OR v_n <> coalesce(cardinality(a_carrier_message_id), 0)
       OR v_n <> coalesce(cardinality(a_detail), 0) OR v_n <> coalesce(cardinality(a_at), 0)
       OR v_m <> coalesce(cardinality(r_step), 0) OR v_m <> coalesce(cardinality(r_next_attempt), 0)
       OR v_m <> coalesce(cardinality(r_final_state), 0)
       OR v_m <> coalesce(cardinality(r_final_channel), 0)
       OR v_m <> coalesce(cardinality(r_final_site), 0)
       OR v_m <> coalesce(cardinality(r_final_reference), 0)
       OR v_m <> coalesce(cardinality(r_final_at), 0) THEN
        RAISE EXCEPTION 'outcome arrays differ in length' USING ERRCODE = 'TN004';
    END IF;

    v_campaign := tenir_fence(p_batch, p_epoch, p_node, 'record_outcomes', v_n);
    IF v_campaign IS NULL THEN
        RETURN 'stale';
    END IF;
    IF v_n = 0 THEN
        RETURN 'ok';
    END IF;

    -- The join keeps only recipients of this batch; the WHERE of DO UPDATE keeps a reference
    -- from touching another recipient's attempt. Either shortfall refuses the whole call.
    INSERT INTO attempts AS a (reference, campaign_id, batch_id, recipient_id, channel, carrier,
                               state, node, site, epoch, step, attempt, carrier_message_id,
                               detail, sent_at, updated_at)
    SELECT u.reference, v_campaign, p_batch, u.recipient, u.channel, u.carrier, u.state, p_node,
           u.site, p_epoch, u.step, u.attempt, u.cmid, u.detail, coalesce(u.at, now()),
           coalesce(u.at, now())
      FROM unnest(a_reference, a_recipient, a_channel, a_carrier, a_state, a_site, a_step,
                  a_attempt, a_carrier_message_id, a_detail, a_at)
           AS u(reference, recipient, channel, carrier, state, site, step, attempt, cmid,
                detail, at)
      JOIN recipients r ON r.id = u.recipient AND r.batch_id = p_batch
    ON CONFLICT (reference) DO UPDATE
       SET state = CASE WHEN tenir_state_rank(excluded.state) > tenir_state_rank(a.state)
                        THEN excluded.state ELSE a.state END,
           carrier_message_id = coalesce(excluded.carrier_message_id, a.carrier_message_id),
           detail = coalesce(excluded.detail, a.detail),
           updated_at = excluded.updated_at
     WHERE a.recipient_id = excluded.recipient_id;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written <> v_n THEN
        SELECT format('recipient %s (reference %s)', u.recipient, u.reference) INTO v_bad
          FROM unnest(a_reference, a_recipient) AS u(reference, recipient)
         WHERE NOT EXISTS (SELECT 1 FROM recipients r
                            WHERE r.id = u.recipient AND r.batch_id = p_batch)
            OR EXISTS (SELECT 1 FROM attempts x
                        WHERE x.reference = u.reference AND x.recipient_id <> u.recipient)
         LIMIT 1;
        RAISE EXCEPTION 'outcome refused: % is not in batch %, or the reference belongs to '
                        'another recipient', coalesce(v_bad, '?'), p_batch
              USING ERRCODE = 'TN003';
    END IF;

    UPDATE recipients AS r
       SET step = CASE WHEN (u.step, u.next_attempt) > (r.step, r.attempt)
                       THEN u.step ELSE r.step END,
           attempt = CASE WHEN (u.step, u.next_attempt) > (r.step, r.attempt)
                          THEN u.next_attempt ELSE r.attempt END,
           state = CASE WHEN r.state = 'pending' AND u.final_state IS NOT NULL
                        THEN u.final_state ELSE r.state END,
           final_channel = CASE WHEN r.state = 'pending' AND u.final_state IS NOT NULL
                                THEN u.final_channel ELSE r.final_channel END,
           final_site = CASE WHEN r.state = 'pending' AND u.final_state IS NOT NULL
                             THEN u.final_site ELSE r.final_site END,
           final_reference = CASE WHEN r.state = 'pending' AND u.final_state IS NOT NULL
                                  THEN u.final_reference ELSE r.final_reference END,
           final_at = CASE WHEN r.state = 'pending' AND u.final_state IS NOT NULL
                           THEN coalesce(u.final_at, now()) ELSE r.final_at END
      FROM unnest(r_id, r_step, r_next_attempt, r_final_state, r_final_channel, r_final_site,
                  r_final_reference, r_final_at)
           AS u(id, step, next_attempt, final_state, final_channel, final_site,
                final_reference, final_at)
     WHERE r.id = u.id AND r.batch_id = p_batch
       AND ((u.step, u.next_attempt) > (r.step, r.attempt)
            OR (r.state = 'pending' AND u.final_state IS NOT NULL));

    -- Receipts and acknowledgements that arrived before these attempts existed.
    IF EXISTS (SELECT 1 FROM receipts WHERE NOT matched AND reference = ANY (a_reference)) THEN
        WITH m AS (
            UPDATE receipts SET matched = true
             WHERE NOT matched AND reference = ANY (a_reference)
            RETURNING id, reference, state, carrier_message_id
        ), best AS (
            SELECT DISTINCT ON (reference) reference, state, carrier_message_id
              FROM m ORDER BY reference, tenir_state_rank(state) DESC, id
        )
        UPDATE attempts a
           SET state = CASE WHEN tenir_state_rank(best.state) > tenir_state_rank(a.state)
                            THEN best.state ELSE a.state END,
               carrier_message_id = coalesce(a.carrier_message_id, best.carrier_message_id),
               updated_at = now()
          FROM best WHERE a.reference = best.reference;
    END IF;
    IF EXISTS (SELECT 1 FROM acknowledgements
                WHERE NOT matched AND reference = ANY (a_reference)) THEN
        WITH m AS (
            UPDATE acknowledgements SET matched = true
             WHERE NOT matched AND reference = ANY (a_reference)
            RETURNING reference, received_at
        ), acked AS (
            UPDATE attempts a SET state = 'acknowledged', updated_at = now()
              FROM m WHERE a.reference = m.reference
            RETURNING a.recipient_id, a.channel, a.site, a.reference, m.received_at
        )
        UPDATE recipients r
           SET state = 'acknowledged', final_channel = acked.channel,
               final_site = acked.site, final_reference = acked.reference,
               final_at = acked.received_at
          FROM acked
         WHERE r.id = acked.recipient_id AND r.state <> 'acknowledged';
    END IF;
    RETURN 'ok';
END $$;

-- Extends the lease; returns the new deadline, or NULL when refused.
CREATE FUNCTION tenir_renew_batch(p_batch bigint, p_epoch bigint, p_node text,
                                  p_lease_s double precision)
RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    v_until timestamptz;
BEGIN
    IF tenir_fence(p_batch, p_epoch, p_node, 'renew_batch') IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE batches SET lease_until = now() + make_interval(secs => p_lease_s)
     WHERE id = p_batch RETURNING lease_until INTO v_until;
    RETURN v_until;
END $$;

-- Puts the batch back to pending (its epoch stays; the next claim increments it).
CREATE FUNCTION tenir_release_batch(p_batch bigint, p_epoch bigint, p_node text)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF tenir_fence(p_batch, p_epoch, p_node, 'release_batch') IS NULL THEN
        RETURN 'stale';
    END IF;
    UPDATE batches SET state = 'pending', owner = NULL, lease_until = NULL WHERE id = p_batch;
    RETURN 'ok';
END $$;

-- Marks the batch done, then completes its campaign when no batch of it is left open.
-- A batch with recipients still pending is not finished (they would be lost): returns
-- 'pending N', unless the campaign was cancelled. Finishing again a batch that the same claim
-- finished is a no-op (a retry after a lost reply), not a stale write. The campaign row is
-- locked before the last-batch check so that two nodes finishing the last two batches at once
-- cannot both miss the completion (the second one waits, then sees the first one's batch done).
CREATE FUNCTION tenir_finish_batch(p_batch bigint, p_epoch bigint, p_node text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_campaign bigint;
    v_state text;
    v_pending bigint;
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
     WHERE id = p_batch;
    SELECT state INTO v_state FROM campaigns WHERE id = v_campaign FOR NO KEY UPDATE;
    IF v_state IN ('running', 'paused')
       AND NOT EXISTS (SELECT 1 FROM batches WHERE campaign_id = v_campaign AND state <> 'done')
    THEN
        UPDATE campaigns SET state = 'completed', completed_at = now() WHERE id = v_campaign;
    END IF;
    RETURN 'ok';
END $$;

-- A receipt or acknowledgement whose attempt is not visible yet may race with the
-- record_outcomes that is creating it. References are campaign:recipient:channel:attempt, so the
-- recipient's batch is known: taking a share lock on it waits for any in-flight outcome write
-- of that batch (which holds the batch row lock), and makes a later one see this event.
CREATE FUNCTION tenir_wait_outcome_writer(p_reference text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_batch bigint;
BEGIN
    IF p_reference ~ '^[0-9]{1,18}:[0-9]{1,18}:' THEN
        SELECT batch_id INTO v_batch FROM recipients
         WHERE id = split_part(p_reference, ':', 2)::bigint;
        IF FOUND THEN
            PERFORM 1 FROM batches WHERE id = v_batch FOR SHARE;
        END IF;
    END IF;
END $$;

-- Records a delivery receipt; returns whether its attempt was found (if not, the receipt is
-- kept unmatched and applied when the attempt is recorded).
CREATE FUNCTION tenir_record_receipt(p_reference text, p_state text, p_cmid text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_found boolean;
BEGIN
    UPDATE attempts
       SET state = CASE WHEN tenir_state_rank(p_state) > tenir_state_rank(state)
                        THEN p_state ELSE state END,
           carrier_message_id = coalesce(carrier_message_id, p_cmid), updated_at = now()
     WHERE reference = p_reference;
    v_found := FOUND;
    IF NOT v_found THEN
        PERFORM tenir_wait_outcome_writer(p_reference);
        UPDATE attempts
           SET state = CASE WHEN tenir_state_rank(p_state) > tenir_state_rank(state)
                            THEN p_state ELSE state END,
               carrier_message_id = coalesce(carrier_message_id, p_cmid), updated_at = now()
         WHERE reference = p_reference;
        v_found := FOUND;
    END IF;
    INSERT INTO receipts (reference, state, carrier_message_id, matched)
    VALUES (p_reference, p_state, p_cmid, v_found);
    RETURN v_found;
END $$;

-- Records an acknowledgement: the attempt becomes acknowledged and so does its recipient's final
-- outcome (an acknowledgement is the strongest evidence: it upgrades a final delivered or
-- failed). Idempotent. Returns false when the attempt is unknown; the acknowledgement is then
-- kept unmatched and applied if the attempt is recorded later.
CREATE FUNCTION tenir_record_ack(p_reference text, p_via text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    SELECT reference, recipient_id, channel, site INTO a
      FROM attempts WHERE reference = p_reference FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM tenir_wait_outcome_writer(p_reference);
        SELECT reference, recipient_id, channel, site INTO a
          FROM attempts WHERE reference = p_reference FOR NO KEY UPDATE;
    END IF;
    IF NOT FOUND THEN
        INSERT INTO acknowledgements (reference, via, matched) VALUES (p_reference, p_via, false)
        ON CONFLICT (reference) DO NOTHING;
        RETURN false;
    END IF;
    INSERT INTO acknowledgements AS k (reference, via, matched) VALUES (p_reference, p_via, true)
    ON CONFLICT (reference) DO UPDATE SET matched = true WHERE NOT k.matched;
    UPDATE attempts SET state = 'acknowledged', updated_at = now()
     WHERE reference = p_reference AND state <> 'acknowledged';
    UPDATE recipients
       SET state = 'acknowledged', final_channel = a.channel, final_site = a.site,
           final_reference = a.reference, final_at = now()
     WHERE id = a.recipient_id AND state <> 'acknowledged';
    RETURN true;
END $$;
