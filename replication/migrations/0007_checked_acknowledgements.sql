-- tenir campaign store: receipts and acknowledgements are checked before anything is stored, and
-- a contact's personal data can be erased.
--
-- Before, a receipt or an acknowledgement for a reference whose attempt was not recorded was
-- kept "for later", whatever the reference: junk callbacks grew `receipts` without bound, and an
-- acknowledgement sent before its attempt existed was applied when it came. Now the caller (the
-- node's API, after checking the link's or the callback's signature) says whether its own
-- dispatcher is waiting on that reference (p_in_flight): only then is an unrecorded attempt's
-- receipt or acknowledgement kept. Otherwise nothing is stored and the verdict says why.
-- A receipt identical to one already stored for its reference (same state and carrier id) is
-- not stored again, so that a replayed callback adds no row.
--
-- Rolling upgrade: tenir_record_receipt and tenir_record_ack of 0002 stay for nodes of the
-- previous version; drop them in a later migration.

-- Applies a receipt to its attempt (state upward only); whether the attempt was found.
CREATE FUNCTION tenir_apply_receipt(p_reference text, p_state text, p_cmid text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE attempts
       SET state = CASE WHEN tenir_state_rank(p_state) > tenir_state_rank(state)
                        THEN p_state ELSE state END,
           carrier_message_id = coalesce(carrier_message_id, p_cmid), updated_at = now()
     WHERE reference = p_reference;
    RETURN FOUND;
END $$;

-- 'recorded' (its attempt exists), 'kept' (not yet, but the caller's dispatcher waits on it)
-- or 'unknown' (nothing stored).
CREATE FUNCTION tenir_record_receipt_checked(p_reference text, p_state text, p_cmid text,
                                             p_in_flight boolean)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_found boolean;
BEGIN
    v_found := tenir_apply_receipt(p_reference, p_state, p_cmid);
    IF NOT v_found THEN  -- perhaps an outcome write in flight: wait for it, then look again
        PERFORM tenir_wait_outcome_writer(p_reference);
        v_found := tenir_apply_receipt(p_reference, p_state, p_cmid);
    END IF;
    IF NOT v_found AND NOT p_in_flight THEN
        RETURN 'unknown';
    END IF;
    INSERT INTO receipts (reference, state, carrier_message_id, matched)
    SELECT p_reference, p_state, p_cmid, v_found
     WHERE NOT EXISTS (SELECT 1 FROM receipts
                        WHERE reference = p_reference AND state = p_state
                          AND carrier_message_id IS NOT DISTINCT FROM p_cmid);
    RETURN CASE WHEN v_found THEN 'recorded' ELSE 'kept' END;
END $$;

-- 'recorded' (attempt and recipient acknowledged), 'kept' (attempt not recorded yet, but the
-- caller's dispatcher waits on it), 'final' (the recipient already has its final outcome: a
-- replay, or too late), 'early' (the recipient exists but not this attempt, and nobody waits
-- on it) or 'unknown' (no such recipient in that campaign). Only the first two store anything.
CREATE FUNCTION tenir_acknowledge(p_reference text, p_via text, p_in_flight boolean)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    v_recipient record;
BEGIN
    IF p_reference !~ '^[0-9]{1,18}:[0-9]{1,18}:' THEN
        RETURN 'unknown';
    END IF;
    SELECT id, campaign_id, state INTO v_recipient FROM recipients
     WHERE id = split_part(p_reference, ':', 2)::bigint;
    IF NOT FOUND OR v_recipient.campaign_id <> split_part(p_reference, ':', 1)::bigint THEN
        RETURN 'unknown';
    END IF;
    SELECT reference, recipient_id, channel, site INTO a
      FROM attempts WHERE reference = p_reference FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM tenir_wait_outcome_writer(p_reference);
        SELECT reference, recipient_id, channel, site INTO a
          FROM attempts WHERE reference = p_reference FOR NO KEY UPDATE;
    END IF;
    -- Read again: the outcome writer waited for above may have finished the recipient.
    SELECT state INTO v_recipient FROM recipients WHERE id = v_recipient.id;
    IF v_recipient.state <> 'pending' THEN
        RETURN 'final';
    END IF;
    IF a.reference IS NULL THEN
        IF NOT p_in_flight THEN
            RETURN 'early';
        END IF;
        INSERT INTO acknowledgements (reference, via, matched) VALUES (p_reference, p_via, false)
        ON CONFLICT (reference) DO NOTHING;
        RETURN 'kept';
    END IF;
    IF a.recipient_id <> split_part(p_reference, ':', 2)::bigint THEN
        RETURN 'unknown';
    END IF;
    INSERT INTO acknowledgements AS k (reference, via, matched) VALUES (p_reference, p_via, true)
    ON CONFLICT (reference) DO UPDATE SET matched = true WHERE NOT k.matched;
    UPDATE attempts SET state = 'acknowledged', updated_at = now()
     WHERE reference = p_reference AND state <> 'acknowledged';
    UPDATE recipients
       SET state = 'acknowledged', final_channel = a.channel, final_site = a.site,
           final_reference = a.reference, final_at = now()
     WHERE id = a.recipient_id AND state = 'pending';
    RETURN 'recorded';
END $$;

-- Erasure of a contact (GDPR article 17): the contact row goes (its group memberships with it),
-- and every campaign recipient copied from it keeps its outcomes as evidence but loses its name
-- and addresses. A pending recipient then has no address: the dispatcher falls back and fails
-- it instead of contacting an erased person. Returns the recipients anonymised, or NULL when the
-- contact does not exist.
CREATE INDEX recipients_contact ON recipients (contact_id) WHERE contact_id IS NOT NULL;

CREATE FUNCTION tenir_erase_contact(p_contact bigint)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_recipients integer;
BEGIN
    DELETE FROM contacts WHERE id = p_contact;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE recipients
       SET name = '(erased)', phone = NULL, mobile = NULL, email = NULL, contact_id = NULL
     WHERE contact_id = p_contact;
    GET DIAGNOSTICS v_recipients = ROW_COUNT;
    RETURN v_recipients;
END $$;
