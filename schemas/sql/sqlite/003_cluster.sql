-- Cluster membership and shard ownership (see the PostgreSQL migration; a cluster needs
-- PostgreSQL, the tables exist here so that both backends share one schema).
CREATE TABLE cluster_nodes (
  node_id TEXT PRIMARY KEY,
  cluster_address TEXT NOT NULL,
  http_address TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'left')),
  started_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);

CREATE TABLE shard_leases (
  shard INTEGER PRIMARY KEY CHECK (shard >= 0),
  node_id TEXT,
  epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  expires_at INTEGER NOT NULL DEFAULT 0
);

CREATE TRIGGER shard_epoch_only_grows BEFORE UPDATE ON shard_leases
  WHEN NEW.epoch < OLD.epoch
  BEGIN SELECT RAISE(ABORT, 'shard_leases.epoch may not go down'); END;
