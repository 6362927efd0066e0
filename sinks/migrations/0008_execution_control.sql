-- The routers' kill switch and trading state (scalp halt, resume, reduce, flatten, and halts a router made
-- itself): one row per control record. A small table, not time-partitioned.
CREATE TABLE IF NOT EXISTS execution_control (
    id          text        NOT NULL,
    ts          timestamptz NOT NULL,
    ts_ns       bigint      NOT NULL,
    account_id  text        NOT NULL,
    command     text        NOT NULL,
    reason      text,
    issued_by   text        NOT NULL,
    CONSTRAINT execution_control_uq UNIQUE (id, ts)
);
CREATE INDEX IF NOT EXISTS execution_control_account_idx ON execution_control (account_id, ts);
