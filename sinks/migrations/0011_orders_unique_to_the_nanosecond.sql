-- orders keeps every snapshot. Snapshots were unique on (id, ts), and ts is timestamptz (microseconds): the
-- router stamps an order's next snapshot at least 1 ns after the last (the `pending` after `sending`, at the
-- same event time), so the two fell in one microsecond, collided, and the sink kept only the first. The key
-- now includes ts_ns, the snapshot's exact event time.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_uq;
ALTER TABLE orders ADD CONSTRAINT orders_uq UNIQUE (id, ts, ts_ns);
