-- features carries the event times of the last trade and quote behind each snapshot (the staleness filters
-- read them), so setups and risk can be replayed from the stored snapshots after the ticks are gone
-- (`scalp replay --source features`). Nanoseconds, as bigint: a comparison at the staleness limit must give
-- what it gave live, which microseconds cannot promise. Snapshots written before carry none.
ALTER TABLE features ADD COLUMN IF NOT EXISTS last_trade_ts bigint;
ALTER TABLE features ADD COLUMN IF NOT EXISTS last_quote_ts bigint;
