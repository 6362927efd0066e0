-- risk_decisions.signal_id -> signals.id is verified rather than declared (see 0001): this view lists
-- decisions whose signal is not stored. Decisions carry their signal's event time, so the join uses
-- the (id, ts) unique key.
CREATE OR REPLACE VIEW risk_decisions_unlinked AS
SELECT d.signal_id, d.ts, d.decision
FROM risk_decisions d
WHERE NOT EXISTS (SELECT 1 FROM signals s WHERE s.id = d.signal_id AND s.ts = d.ts);
