-- TimescaleDB flavour: hypertables on ts (1-day chunks), compression segmented by symbol for the
-- high-volume tables, a tick retention policy (removed again by 0009: only `scalp db maintain` removes
-- ticks, after the rollup and the archive) and a 1-minute continuous aggregate from market_trades.
-- The aggregate refreshes only the last 3 days, well inside the retention window, so dropped raw
-- chunks never empty materialised buckets (a retention policy that drops raw chunks inside an
-- aggregate's refresh window silently empties those buckets at the next refresh).

SELECT create_hypertable('market_trades', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('market_quotes', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('bars_1m', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('options_chain', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('features', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('signals', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('risk_decisions', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('order_intents', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('orders', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('fills', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('trade_ledger', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('account_snapshot', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
SELECT create_hypertable('ingest_gaps', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);

ALTER TABLE market_trades SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('market_trades', INTERVAL '2 days', if_not_exists => TRUE);
ALTER TABLE market_quotes SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('market_quotes', INTERVAL '2 days', if_not_exists => TRUE);
ALTER TABLE bars_1m SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('bars_1m', INTERVAL '2 days', if_not_exists => TRUE);
ALTER TABLE options_chain SET (timescaledb.compress, timescaledb.compress_segmentby = 'underlying', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('options_chain', INTERVAL '2 days', if_not_exists => TRUE);
ALTER TABLE features SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('features', INTERVAL '2 days', if_not_exists => TRUE);

SELECT add_retention_policy('market_trades', INTERVAL '30 days', if_not_exists => TRUE);
SELECT add_retention_policy('market_quotes', INTERVAL '30 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m_trades_cagg
WITH (timescaledb.continuous) AS
SELECT symbol,
       time_bucket(INTERVAL '1 minute', ts) AS ts,
       first(price, ts) AS o,
       max(price)       AS h,
       min(price)       AS l,
       last(price, ts)  AS c,
       sum(size)::bigint AS v,
       sum(price * size) / NULLIF(sum(size), 0) AS vwap,
       count(*)         AS trades
FROM market_trades
GROUP BY symbol, time_bucket(INTERVAL '1 minute', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('bars_1m_trades_cagg',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);
