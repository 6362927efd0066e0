-- fills: slippage in basis points and the latency chain signal -> submit -> ack (-> fill: latency_ms).
ALTER TABLE fills ADD COLUMN IF NOT EXISTS slippage_bps double precision;
ALTER TABLE fills ADD COLUMN IF NOT EXISTS submit_latency_ms double precision;
ALTER TABLE fills ADD COLUMN IF NOT EXISTS ack_latency_ms double precision;
