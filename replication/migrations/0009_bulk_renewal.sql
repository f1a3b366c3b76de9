-- tenir campaign store: one statement renews every batch a node holds (issue 13).
--
-- A node holds the batches it sends from and a reserve claimed ahead (up to a few hundred on the
-- lab's throughput benchmark); renewed one statement each, every lease/6, they were a third of
-- the statements PostgreSQL ran. The node's renewers now meet on one tick and renew together.
-- Each batch is fenced, renewed and logged exactly as by tenir_renew_batch (0006), in the order
-- given; a stale one is refused (NULL deadline, counted in fencing_rejections) and the others
-- are renewed all the same. An unknown batch refuses the whole call (TN002), as one alone does.
CREATE FUNCTION tenir_renew_batches(p_node text, p_batches bigint[], p_epochs bigint[],
                                    p_lease_s double precision)
RETURNS TABLE (out_batch_id bigint, out_lease_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    IF coalesce(cardinality(p_batches), 0) <> coalesce(cardinality(p_epochs), 0) THEN
        RAISE EXCEPTION 'batch and epoch arrays differ in length' USING ERRCODE = 'TN004';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_batches), 0) LOOP
        out_batch_id := p_batches[i];
        out_lease_until := tenir_renew_batch(p_batches[i], p_epochs[i], p_node, p_lease_s);
        RETURN NEXT;
    END LOOP;
END $$;
