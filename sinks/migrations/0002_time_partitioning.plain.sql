-- Plain PostgreSQL flavour: the tables of 0001 are declared PARTITION BY RANGE (ts); pg_partman
-- (4.x, native partitioning) manages daily partitions: 7 days back and 7 ahead of now, plus a default
-- partition. Writers of historical data (replays, backfills) create the partitions they need with
-- partman.create_partition_time before writing; `scalp db maintain` runs partman's upkeep.

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

SELECT partman.create_parent(p_parent_table => 'public.market_trades', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.market_trades');
SELECT partman.create_parent(p_parent_table => 'public.market_quotes', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.market_quotes');
SELECT partman.create_parent(p_parent_table => 'public.bars_1m', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.bars_1m');
SELECT partman.create_parent(p_parent_table => 'public.options_chain', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.options_chain');
SELECT partman.create_parent(p_parent_table => 'public.features', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.features');
SELECT partman.create_parent(p_parent_table => 'public.signals', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.signals');
SELECT partman.create_parent(p_parent_table => 'public.risk_decisions', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.risk_decisions');
SELECT partman.create_parent(p_parent_table => 'public.order_intents', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.order_intents');
SELECT partman.create_parent(p_parent_table => 'public.orders', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.orders');
SELECT partman.create_parent(p_parent_table => 'public.fills', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.fills');
SELECT partman.create_parent(p_parent_table => 'public.trade_ledger', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.trade_ledger');
SELECT partman.create_parent(p_parent_table => 'public.account_snapshot', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.account_snapshot');
SELECT partman.create_parent(p_parent_table => 'public.ingest_gaps', p_control => 'ts', p_type => 'native',
       p_interval => '1 day', p_premake => 7)
WHERE NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.ingest_gaps');

UPDATE partman.part_config SET infinite_time_partitions = true WHERE parent_table LIKE 'public.%';
