-- config_snapshots is fed by its topic (the streams worker publishes the content behind each new policy and
-- settings digest). The record's ts (when the publisher started running with it; a configuration has no
-- venue time) is kept, with ts_ns as on every topic's table, next to first_seen (when the sink stored it).
-- One row per digest: the first wins.
ALTER TABLE config_snapshots ADD COLUMN IF NOT EXISTS ts timestamptz;
ALTER TABLE config_snapshots ADD COLUMN IF NOT EXISTS ts_ns bigint;
