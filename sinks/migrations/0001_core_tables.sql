-- Every table of the pipeline (topic name = table name). Time columns are timestamptz from venue event time; the exact
-- nanosecond value is kept in ts_ns. Unique keys include ts (required by partitioning/hypertables).
-- {{partition_by_ts}} is "PARTITION BY RANGE (ts)" on plain PostgreSQL (pg_partman manages the daily
-- partitions) and empty with TimescaleDB (0002 turns the tables into hypertables).

CREATE TABLE IF NOT EXISTS market_trades (
    symbol          text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    price           double precision NOT NULL,
    size            bigint      NOT NULL,
    conditions      integer[]   NOT NULL DEFAULT '{}',
    exchange        integer     NOT NULL,
    tape            integer,
    seq             bigint      NOT NULL,
    trade_id        text        NOT NULL,
    ts_participant  timestamptz,
    ts_ingest       timestamptz NOT NULL,
    source          text        NOT NULL DEFAULT 'ws',
    CONSTRAINT market_trades_uq UNIQUE (symbol, ts, exchange, trade_id)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS market_quotes (
    symbol          text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    bid             double precision NOT NULL,
    ask             double precision NOT NULL,
    bid_size        bigint      NOT NULL,
    ask_size        bigint      NOT NULL,
    bid_exchange    integer     NOT NULL,
    ask_exchange    integer     NOT NULL,
    conditions      integer[]   NOT NULL DEFAULT '{}',
    tape            integer,
    seq             bigint      NOT NULL,
    ts_ingest       timestamptz NOT NULL,
    source          text        NOT NULL DEFAULT 'ws',
    CONSTRAINT market_quotes_uq UNIQUE (symbol, ts, seq)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS bars_1m (
    symbol          text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    ts_end          timestamptz NOT NULL,
    o               double precision NOT NULL,
    h               double precision NOT NULL,
    l               double precision NOT NULL,
    c               double precision NOT NULL,
    v               bigint      NOT NULL,
    vwap            double precision,
    trades          bigint,
    aggregated_from text        NOT NULL CHECK (aggregated_from IN ('polygon_am', 'rest', 'trades_rollup')),
    ts_ingest       timestamptz NOT NULL,
    CONSTRAINT bars_1m_uq UNIQUE (symbol, ts, aggregated_from)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS options_chain (
    contract_symbol text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    underlying      text        NOT NULL,
    expiration      date        NOT NULL,
    strike          double precision NOT NULL,
    contract_type   text        NOT NULL CHECK (contract_type IN ('call', 'put')),
    bid             double precision,
    ask             double precision,
    last            double precision,
    volume          bigint,
    open_interest   bigint,
    iv              double precision,
    delta           double precision,
    gamma           double precision,
    theta           double precision,
    vega            double precision,
    underlying_price double precision,
    ts_ingest       timestamptz NOT NULL,
    CONSTRAINT options_chain_uq UNIQUE (contract_symbol, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS features (
    symbol          text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    session         text        NOT NULL,
    vwap            double precision,
    sigma_upper     double precision,
    sigma_lower     double precision,
    ema20           double precision,
    ema50           double precision,
    ema20_slope     double precision,
    rvol            double precision,
    hod             double precision,
    lod             double precision,
    prev_close      double precision,
    cvd             double precision NOT NULL,
    ob_imbalance    double precision,
    last_price      double precision,
    bid             double precision,
    ask             double precision,
    source_commit   text        NOT NULL,
    session_policy_digest text  NOT NULL,
    env_hash        text        NOT NULL,
    lookback_min    integer     NOT NULL,
    lookback_days   integer     NOT NULL,
    warm            boolean     NOT NULL,
    CONSTRAINT features_uq UNIQUE (symbol, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS signals (
    id              text        NOT NULL,
    symbol          text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    session         text        NOT NULL,
    setup           text        NOT NULL,
    side            text        NOT NULL CHECK (side IN ('long', 'short')),
    score           double precision NOT NULL,
    reference_price double precision,
    features_ref    text        NOT NULL,
    filters_passed  text[]      NOT NULL DEFAULT '{}',
    filters_blocked text[]      NOT NULL DEFAULT '{}',
    status          text        NOT NULL CHECK (status IN ('generated', 'blocked', 'promoted')),
    state           text,
    source_commit   text        NOT NULL,
    session_policy_digest text  NOT NULL,
    CONSTRAINT signals_uq UNIQUE (id, ts)
) {{partition_by_ts}};

-- risk_decisions.signal_id -> signals.id: a foreign key cannot be declared (signals is partitioned
-- on ts and the sinks write topics independently, so a decision may land before its signal). The
-- link is verified by the view risk_decisions_unlinked (0003), which must be empty once sinks catch up.
CREATE TABLE IF NOT EXISTS risk_decisions (
    signal_id       text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    symbol          text        NOT NULL,
    decision        text        NOT NULL CHECK (decision IN ('approve', 'veto')),
    veto_reasons    text[]      NOT NULL DEFAULT '{}',
    limits_snapshot jsonb       NOT NULL,
    session_policy_digest text  NOT NULL,
    CONSTRAINT risk_decisions_uq UNIQUE (signal_id, ts),
    CONSTRAINT risk_decisions_veto_has_reason CHECK (decision = 'approve' OR cardinality(veto_reasons) > 0)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS order_intents (
    id              text        NOT NULL,
    signal_id       text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    symbol          text        NOT NULL,
    instrument      text        NOT NULL,
    option_symbol   text,
    side            text        NOT NULL,
    qty             bigint      NOT NULL CHECK (qty > 0),
    entry_type      text        NOT NULL,
    entry_limit     double precision,
    take_profit     double precision NOT NULL,
    stop_loss       double precision NOT NULL,
    time_stop_ts    timestamptz,
    risk_per_share  double precision NOT NULL,
    reference_price double precision,
    CONSTRAINT order_intents_uq UNIQUE (id, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS orders (
    id              text        NOT NULL,
    intent_id       text        NOT NULL,
    tag             text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    broker          text        NOT NULL,
    broker_order_id text,
    symbol          text        NOT NULL,
    order_class     text        NOT NULL,
    side            text        NOT NULL,
    qty             bigint      NOT NULL,
    order_type      text        NOT NULL,
    price           double precision,
    stop            double precision,
    price_guard     double precision,
    duration        text        NOT NULL,
    legs            jsonb       NOT NULL DEFAULT '[]',
    status          text        NOT NULL,
    status_history  jsonb       NOT NULL DEFAULT '[]',
    payload         jsonb       NOT NULL,
    preview         boolean     NOT NULL DEFAULT false,
    CONSTRAINT orders_uq UNIQUE (id, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS fills (
    id              text        NOT NULL,
    order_id        text        NOT NULL,
    broker_order_id text,
    signal_id       text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    symbol          text        NOT NULL,
    side            text        NOT NULL,
    qty             bigint      NOT NULL CHECK (qty > 0),
    price           double precision NOT NULL,
    leg_index       integer,
    reference_price double precision,
    slippage        double precision,
    latency_ms      double precision,
    source          text        NOT NULL,
    CONSTRAINT fills_uq UNIQUE (id, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS trade_ledger (
    id              text        NOT NULL,
    signal_id       text        NOT NULL,
    intent_id       text        NOT NULL,
    order_ids       text[]      NOT NULL DEFAULT '{}',
    fill_ids        text[]      NOT NULL DEFAULT '{}',
    symbol          text        NOT NULL,
    side            text        NOT NULL,
    qty             bigint      NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    ts_open         timestamptz NOT NULL,
    entry_price     double precision NOT NULL,
    exit_price      double precision NOT NULL,
    exit_reason     text        NOT NULL,
    realized_pnl    numeric(18, 6) NOT NULL,
    fees            numeric(18, 6) NOT NULL,
    r_multiple      double precision NOT NULL,
    CONSTRAINT trade_ledger_uq UNIQUE (id, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS account_snapshot (
    account_id      text        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    session         text        NOT NULL,
    cash            numeric(18, 6) NOT NULL,
    equity          numeric(18, 6) NOT NULL,
    unrealized_pnl  numeric(18, 6) NOT NULL,
    realized_pnl    numeric(18, 6) NOT NULL,
    buying_power    numeric(18, 6),
    positions       jsonb       NOT NULL DEFAULT '[]',
    CONSTRAINT account_snapshot_uq UNIQUE (account_id, ts)
) {{partition_by_ts}};

CREATE TABLE IF NOT EXISTS ingest_gaps (
    id              text        NOT NULL,
    symbol          text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('trades', 'quotes', 'bars')),
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    ts_from         timestamptz NOT NULL,
    ts_to           timestamptz NOT NULL,
    reason          text        NOT NULL,
    events_recovered bigint     NOT NULL,
    CONSTRAINT ingest_gaps_uq UNIQUE (id, ts)
) {{partition_by_ts}};

-- Small tables: not time-partitioned.
CREATE TABLE IF NOT EXISTS risk_day (
    ts_date         date        NOT NULL,
    ts              timestamptz NOT NULL,
    ts_ns           bigint      NOT NULL,
    trades_taken    integer     NOT NULL,
    open_positions  integer     NOT NULL DEFAULT 0,
    r_realized      double precision NOT NULL,
    max_drawdown    double precision NOT NULL,
    breach_flags    text[]      NOT NULL DEFAULT '{}',
    CONSTRAINT risk_day_uq UNIQUE (ts_date, ts)
);

CREATE TABLE IF NOT EXISTS signal_labels (
    signal_id       text        NOT NULL,
    rule_digest     text        NOT NULL,
    ts              timestamptz NOT NULL,
    symbol          text        NOT NULL,
    setup           text        NOT NULL,
    side            text        NOT NULL,
    entry_price     double precision NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('TP', 'SL', 'TIME')),
    exit_ts         timestamptz NOT NULL,
    exit_price      double precision NOT NULL,
    r               double precision NOT NULL,
    mfe             double precision NOT NULL,
    mae             double precision NOT NULL,
    run_id          text,
    PRIMARY KEY (signal_id, rule_digest)
);

CREATE TABLE IF NOT EXISTS config_snapshots (
    digest          text        PRIMARY KEY,
    kind            text        NOT NULL,
    body            text        NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now()
);

-- The sink's exactly-once ledger: the next offset to read per consumer group and partition,
-- written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS sink_offsets (
    group_id        text        NOT NULL,
    topic           text        NOT NULL,
    partition       integer     NOT NULL,
    next_offset     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

CREATE INDEX IF NOT EXISTS signals_setup_ts_idx ON signals (setup, ts);
CREATE INDEX IF NOT EXISTS fills_order_idx ON fills (order_id, ts);
CREATE INDEX IF NOT EXISTS trade_ledger_signal_idx ON trade_ledger (signal_id);
