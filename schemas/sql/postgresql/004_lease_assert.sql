-- A ledger batch's fence as a statement that fails unless (shard, epoch) is the shard's
-- current lease at p_now (milliseconds on the database's clock). Like the check it stands
-- for, it locks the lease row until the transaction ends. A batch can then assert its
-- fences in the same round trip as its writes: a lease that moved undoes the whole batch
-- (SQLSTATE TG001), and the writer sorts its posts with the plain check.
CREATE FUNCTION tollgate_assert_lease(p_shard INTEGER, p_epoch BIGINT, p_now BIGINT)
RETURNS INTEGER AS $$
BEGIN
  PERFORM 1 FROM shard_leases
    WHERE shard = p_shard AND epoch = p_epoch AND expires_at > p_now FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the lease of shard % is no longer at epoch %', p_shard, p_epoch
      USING ERRCODE = 'TG001';
  END IF;
  RETURN 1;
END;
$$ LANGUAGE plpgsql;
