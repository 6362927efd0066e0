-- One definition of a bar: the continuous aggregate over market_trades applies the trade-condition rules
-- of config/trade_conditions.yaml, as the maintenance rollup and the feature engine do (0002's aggregate
-- counted every print, so an odd lot at an extreme price set its high). A trade whose conditions include a
-- code that may not set prices (updates_high_low and updates_last not both true) is left out of the OHLC;
-- one whose conditions include a code that does not update volume is left out of volume, VWAP and the
-- trade count. The two code lists below are the YAML's (a unit test compares them); a change to the rules
-- is a new migration. The aggregate is rebuilt from the ticks still in the table.
DROP MATERIALIZED VIEW IF EXISTS bars_1m_trades_cagg;

CREATE MATERIALIZED VIEW bars_1m_trades_cagg
WITH (timescaledb.continuous) AS
SELECT symbol,
       time_bucket(INTERVAL '1 minute', ts) AS ts,
       first(price, ts) FILTER (WHERE NOT conditions && '{2,7,12,13,15,16,20,21,22,29,37,52,53}'::int[]) AS o,
       max(price) FILTER (WHERE NOT conditions && '{2,7,12,13,15,16,20,21,22,29,37,52,53}'::int[]) AS h,
       min(price) FILTER (WHERE NOT conditions && '{2,7,12,13,15,16,20,21,22,29,37,52,53}'::int[]) AS l,
       last(price, ts) FILTER (WHERE NOT conditions && '{2,7,12,13,15,16,20,21,22,29,37,52,53}'::int[]) AS c,
       coalesce(sum(size) FILTER (WHERE NOT conditions && '{15,16}'::int[]), 0)::bigint AS v,
       sum(price * size) FILTER (WHERE NOT conditions && '{15,16}'::int[])
           / NULLIF(sum(size) FILTER (WHERE NOT conditions && '{15,16}'::int[]), 0) AS vwap,
       count(*) FILTER (WHERE NOT conditions && '{15,16}'::int[]) AS trades
FROM market_trades
GROUP BY symbol, time_bucket(INTERVAL '1 minute', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('bars_1m_trades_cagg',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);
