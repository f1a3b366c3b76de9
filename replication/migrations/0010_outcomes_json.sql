-- tenir campaign store: an outcome flush as two JSON parameters (issue 13).
--
-- A flush passed tenir_record_outcomes 19 column arrays. psycopg adapts each array element in
-- Python: about 8 µs of a node's CPU per outcome, the largest single cost of its flushes in the
-- loopback profile. The node now sends the flush as two JSON arrays of rows (encoded in C), and
-- this function unpacks them (as jsonb: parsed once) into those arrays, in one pass each, and calls
-- tenir_record_outcomes: fencing, merging, the claim log and every refusal are unchanged.
--
-- p_attempts:   [[reference, recipient, channel, carrier, state, site, step, attempt,
--                 carrier_message_id, detail, at], ...]
-- p_recipients: [[id, step, next_attempt, final_state, final_channel, final_site,
--                 final_reference, final_at], ...]
-- (times as ISO 8601 with their offset, or null). A row of the wrong length is refused
-- (TN004), as arrays of different lengths are.
CREATE FUNCTION tenir_record_outcomes_json(p_batch bigint, p_epoch bigint, p_node text,
                                           p_attempts jsonb, p_recipients jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    a_reference text[]; a_recipient bigint[]; a_channel text[]; a_carrier text[];
    a_state text[]; a_site text[]; a_step integer[]; a_attempt integer[];
    a_carrier_message_id text[]; a_detail text[]; a_at timestamptz[];
    r_id bigint[]; r_step integer[]; r_next_attempt integer[]; r_final_state text[];
    r_final_channel text[]; r_final_site text[]; r_final_reference text[];
    r_final_at timestamptz[];
    v_bad bigint;
BEGIN
    IF jsonb_typeof(p_attempts) <> 'array' OR jsonb_typeof(p_recipients) <> 'array' THEN
        RAISE EXCEPTION 'outcomes: two JSON arrays of rows expected' USING ERRCODE = 'TN004';
    END IF;
    -- One pass each (jsonb: parsed once, not at every ->>). The aggregates see the rows in
    -- the same order, so each array's i-th element comes from the same row.
    SELECT array_agg(e->>0), array_agg((e->>1)::bigint), array_agg(e->>2), array_agg(e->>3),
           array_agg(e->>4), array_agg(e->>5), array_agg((e->>6)::integer),
           array_agg((e->>7)::integer), array_agg(e->>8), array_agg(e->>9),
           array_agg((e->>10)::timestamptz),
           min(i) FILTER (WHERE jsonb_typeof(e) <> 'array' OR jsonb_array_length(e) <> 11)
      INTO a_reference, a_recipient, a_channel, a_carrier, a_state, a_site, a_step, a_attempt,
           a_carrier_message_id, a_detail, a_at, v_bad
      FROM jsonb_array_elements(p_attempts) WITH ORDINALITY AS t(e, i);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'outcome row % has the wrong shape', v_bad USING ERRCODE = 'TN004';
    END IF;
    SELECT array_agg((e->>0)::bigint), array_agg((e->>1)::integer),
           array_agg((e->>2)::integer), array_agg(e->>3), array_agg(e->>4), array_agg(e->>5),
           array_agg(e->>6), array_agg((e->>7)::timestamptz),
           min(i) FILTER (WHERE jsonb_typeof(e) <> 'array' OR jsonb_array_length(e) <> 8)
      INTO r_id, r_step, r_next_attempt, r_final_state, r_final_channel, r_final_site,
           r_final_reference, r_final_at, v_bad
      FROM jsonb_array_elements(p_recipients) WITH ORDINALITY AS t(e, i);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'recipient row % has the wrong shape', v_bad USING ERRCODE = 'TN004';
    END IF;
    RETURN tenir_record_outcomes(p_batch, p_epoch, p_node,
        a_reference, a_recipient, a_channel, a_carrier, a_state, a_site, a_step, a_attempt,
        a_carrier_message_id, a_detail, a_at,
        r_id, r_step, r_next_attempt, r_final_state, r_final_channel, r_final_site,
        r_final_reference, r_final_at);
END $$;
