-- risk_day keeps every update. Updates were unique on (ts_date, ts): two with the same event time collided
-- and the sink kept the first, so the table could show a stale day. Each update now carries the day's
-- update number (seq, from the risk module; 0 for rows written before it existed), part of the unique key.
ALTER TABLE risk_day ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0;
ALTER TABLE risk_day DROP CONSTRAINT IF EXISTS risk_day_uq;
ALTER TABLE risk_day ADD CONSTRAINT risk_day_uq UNIQUE (ts_date, seq, ts);
