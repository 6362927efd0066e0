"""The catalog's topic names, for code to refer to (no topic-name literals elsewhere; a unit test checks
that these are exactly the topics of topics.yaml). The physical name adds the optional prefix:
``KafkaSettings.topic(name)``. Each topic's table has the same name."""

from __future__ import annotations

MARKET_TRADES = "market_trades"
MARKET_QUOTES = "market_quotes"
BARS_1M = "bars_1m"
OPTIONS_CHAIN = "options_chain"
FEATURES = "features"
SIGNALS = "signals"
RISK_DECISIONS = "risk_decisions"
ORDER_INTENTS = "order_intents"
ORDERS = "orders"
FILLS = "fills"
TRADE_LEDGER = "trade_ledger"
ACCOUNT_SNAPSHOT = "account_snapshot"
RISK_DAY = "risk_day"
INGEST_GAPS = "ingest_gaps"
EXECUTION_CONTROL = "execution_control"
CONFIG_SNAPSHOTS = "config_snapshots"

ALL = (
    MARKET_TRADES,
    MARKET_QUOTES,
    BARS_1M,
    OPTIONS_CHAIN,
    FEATURES,
    SIGNALS,
    RISK_DECISIONS,
    ORDER_INTENTS,
    ORDERS,
    FILLS,
    TRADE_LEDGER,
    ACCOUNT_SNAPSHOT,
    RISK_DAY,
    INGEST_GAPS,
    EXECUTION_CONTROL,
    CONFIG_SNAPSHOTS,
)
