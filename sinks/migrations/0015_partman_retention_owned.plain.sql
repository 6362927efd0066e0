-- Plain PostgreSQL flavour: no pg_partman retention on any table. `scalp db maintain` before this release
-- set a retention of `--retention-days` on the tick tables, and pg_partman applied it (in the same run's
-- run_maintenance, or in its background worker) to whole UTC-day partitions against now(): run between
-- midnight UTC and midnight in New York, it dropped the partition of the oldest kept session, ticks that were
-- neither rolled up into minute bars nor archived. Only `scalp db maintain` removes ticks, by its own cutoff
-- (midnight in New York), after the rollup and the archive.
UPDATE partman.part_config SET retention = NULL WHERE parent_table LIKE 'public.%';
