-- The execution ledger helper's audit trail: every order sent, broker reply and state change, written
-- asynchronously by `scalp execute` (connectors/execution/audit.py). recorded_at is when the router
-- recorded it (an audit time, not market time); ts_ns is the event time the entry refers to.
CREATE TABLE IF NOT EXISTS execution_audit (
    id          bigserial   PRIMARY KEY,
    recorded_at timestamptz NOT NULL,
    ts_ns       bigint,
    kind        text        NOT NULL,
    broker      text        NOT NULL,
    order_id    text,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS execution_audit_order_idx ON execution_audit (order_id, recorded_at);
