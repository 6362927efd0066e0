-- TimescaleDB flavour, on the API TimescaleDB 2.18+ recommends (hypercore/columnstore), and retention owned
-- by `scalp db maintain`:
-- * columnstore settings and policies through ALTER TABLE .. SET (timescaledb.enable_columnstore, ..) and
--   add_columnstore_policy (they replace the compression settings and policies 0002 created with the API
--   deprecated in 2.18; a columnstore policy is the same job, so existing policies are kept, not doubled);
-- * no background retention policy on the tick tables: 0002's 30-day policies ran on their own schedule,
--   whatever `scalp db maintain --retention-days` said, and dropped ticks that were never rolled up into
--   bars_1m nor archived. Only `scalp db maintain` removes ticks now: roll up, archive with a count check,
--   then drop the chunks. A missed maintenance run loses nothing.
ALTER TABLE market_trades SET (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'symbol', timescaledb.orderby = 'ts');
ALTER TABLE market_quotes SET (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'symbol', timescaledb.orderby = 'ts');
ALTER TABLE bars_1m SET (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'symbol', timescaledb.orderby = 'ts');
ALTER TABLE options_chain SET (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'underlying', timescaledb.orderby = 'ts');
ALTER TABLE features SET (timescaledb.enable_columnstore = true, timescaledb.segmentby = 'symbol', timescaledb.orderby = 'ts');
CALL add_columnstore_policy('market_trades', after => INTERVAL '2 days', if_not_exists => true);
CALL add_columnstore_policy('market_quotes', after => INTERVAL '2 days', if_not_exists => true);
CALL add_columnstore_policy('bars_1m', after => INTERVAL '2 days', if_not_exists => true);
CALL add_columnstore_policy('options_chain', after => INTERVAL '2 days', if_not_exists => true);
CALL add_columnstore_policy('features', after => INTERVAL '2 days', if_not_exists => true);
SELECT remove_retention_policy('market_trades', if_exists => true);
SELECT remove_retention_policy('market_quotes', if_exists => true);
