-- tenir campaign store: same-site takeover of a dead node's batches (invariant 4).
--
-- A node that dies may have submitted messages to its site's carrier without recording their
-- outcomes. Whoever takes the batch over resends them with the same references; only the
-- carrier that saw a reference deduplicates it, and each site has its own carriers. So the
-- watchdog puts such batches back to pending *reserved* for the dead node's site for a short
-- hold: until reserved_until only a claimer of that site takes them; after it, anyone (work is
-- never stuck if that site's nodes are busy or die too). A claim clears the reservation.
--
-- owner_site records the site the owner claimed for (the site whose carriers got the
-- references), so that the watchdog knows a dead node's site from the database even when it
-- never saw that node's membership (a new watchdog leader after the old one died).
--
-- Rolling upgrade. Nodes of the previous version keep calling tenir_claim_batch(text, double
-- precision) and keep their own UPDATE for reassignment. The two-argument function is kept (no
-- DEFAULT on the new p_site argument, which would make a two-argument call ambiguous) and now
-- treats its caller's site as unknown: it honours every reservation until it expires, as a
-- claimer of another site would. A previous-version node of the reserved site waits at most the
-- hold; no previous-version node of the other site can take the batch early. Drop it in a later
-- migration once no node of the previous version runs.

ALTER TABLE batches
    ADD COLUMN owner_site     text,        -- site the owner claimed for; NULL unless claimed
                                           -- (or done: history), or claimed without a site
    ADD COLUMN reserved_site  text,        -- only claimers of this site may take the batch...
    ADD COLUMN reserved_until timestamptz, -- ...until then (database clock)
    ADD CONSTRAINT batches_reserved_check
        CHECK ((reserved_site IS NULL) = (reserved_until IS NULL)
               AND (reserved_site IS NULL OR state = 'pending'));

-- Hands one batch to p_node (see tenir_claim_batch below) and returns it. p_honour: skip the
-- batches reserved for another site than p_site until their reservation expires (a NULL p_site
-- then matches no reservation). The claim clears the reservation and records p_site.
CREATE FUNCTION tenir_claim_next(p_node text, p_lease_s double precision, p_site text,
                                 p_honour boolean)
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
           AND (NOT p_honour OR b.reserved_until IS NULL OR b.reserved_until <= now()
                OR coalesce(b.reserved_site = p_site, false))
         ORDER BY b.id
         LIMIT 1
         FOR NO KEY UPDATE SKIP LOCKED;
        IF FOUND THEN
            RETURN QUERY
            UPDATE batches b
               SET state = 'claimed', owner = p_node, owner_site = p_site, epoch = b.epoch + 1,
                   lease_until = now() + make_interval(secs => p_lease_s), claimed_at = now(),
                   reserved_site = NULL, reserved_until = NULL
             WHERE b.id = v_batch
            RETURNING b.id, b.campaign_id, b.epoch, b.lease_until;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- Hands one batch to p_node of site p_site: the first pending batch (or claimed batch whose
-- lease expired) of the running campaigns, by campaign priority then age, skipping batches
-- locked by concurrent claimers and, until their hold ends, batches reserved for another site.
-- A NULL p_site states no site: it takes reserved batches too (tools and tests; every alert
-- node passes its site).
CREATE FUNCTION tenir_claim_batch(p_node text, p_lease_s double precision, p_site text)
RETURNS TABLE (out_batch_id bigint, out_campaign_id bigint, out_epoch bigint,
               out_lease_until timestamptz)
LANGUAGE sql AS $$
    SELECT * FROM tenir_claim_next(p_node, p_lease_s, p_site, p_site IS NOT NULL)
$$;

-- The previous version's call (rolling upgrade, see the top): its caller's site is unknown, so
-- every reservation holds against it until it expires.
CREATE OR REPLACE FUNCTION tenir_claim_batch(p_node text, p_lease_s double precision)
RETURNS TABLE (out_batch_id bigint, out_campaign_id bigint, out_epoch bigint,
               out_lease_until timestamptz)
LANGUAGE sql AS $$
    SELECT * FROM tenir_claim_next(p_node, p_lease_s, NULL, true)
$$;

-- Puts the batch back to pending (its epoch stays; the next claim increments it), with neither
-- owner nor owner site, and no reservation: the holder gave it back on purpose (drain, a channel
-- down at its site), anyone may take it.
CREATE OR REPLACE FUNCTION tenir_release_batch(p_batch bigint, p_epoch bigint, p_node text)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF tenir_fence(p_batch, p_epoch, p_node, 'release_batch') IS NULL THEN
        RETURN 'stale';
    END IF;
    UPDATE batches SET state = 'pending', owner = NULL, owner_site = NULL, lease_until = NULL
     WHERE id = p_batch;
    RETURN 'ok';
END $$;
