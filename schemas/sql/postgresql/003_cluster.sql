-- Cluster membership and shard ownership. Times are milliseconds since the Unix epoch on
-- the database's clock, so that every node judges leases by the same clock.
CREATE TABLE cluster_nodes (
  node_id TEXT PRIMARY KEY,
  cluster_address TEXT NOT NULL,           -- host:port of the node's CAF middleman
  http_address TEXT NOT NULL,              -- host:port of its HTTP front end
  state TEXT NOT NULL DEFAULT 'active'     -- active, draining, left
    CHECK (state IN ('active', 'draining', 'left')),
  started_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL               -- the membership lease
);

-- One row per shard. epoch is the fencing token: it grows by one with every acquisition and
-- never goes down; a ledger batch commits for a shard only while its epoch is current.
CREATE TABLE shard_leases (
  shard INTEGER PRIMARY KEY CHECK (shard >= 0),
  node_id TEXT,                            -- NULL: free
  epoch BIGINT NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  expires_at BIGINT NOT NULL DEFAULT 0
);

CREATE FUNCTION shard_epoch_only_grows() RETURNS trigger AS $$
BEGIN
  IF NEW.epoch < OLD.epoch THEN
    RAISE EXCEPTION 'shard_leases.epoch may not go down (shard %)', OLD.shard;
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER shard_epoch_only_grows BEFORE UPDATE ON shard_leases
  FOR EACH ROW EXECUTE FUNCTION shard_epoch_only_grows();
