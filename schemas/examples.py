"""One deterministic, plausible example record per catalog topic, derived from its schema.

Used by the round-trip check of `scalp demo` and as a smoke fixture; event times are a fixed
session instant (never the wall clock).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from .catalog import Catalog

# 2026-11-23 10:00:00 US/Eastern (15:00 UTC), in ns: a fixed RTH instant
EXAMPLE_TS_NS = 1_795_446_000_000_000_000
_EXAMPLE_DATE = dt.date(2026, 11, 23)

_STRINGS = {
    "symbol": "SPY",
    "underlying": "SPY",
    "contract_symbol": "O:SPY261123C00600000",
    "contract_type": "call",
    "session": "rth",
    "aggregated_from": "polygon_am",
    "source": "ws",
    "setup": "vwap_reclaim",
    "side": "long",
    "status": "generated",
    "decision": "approve",
    "broker": "paper",
    "order_class": "otoco",
    "order_type": "limit",
    "entry_type": "limit",
    "duration": "day",
    "instrument": "equity",
    "kind": "trades",
    "reason": "reconnect",
    "exit_reason": "tp",
    "limits_snapshot": '{"max_trades_per_day": 5}',
    "payload": '{"class": "otoco"}',
    "features_ref": f"SPY@{EXAMPLE_TS_NS}",
}

_EMPTY_ARRAYS = {"veto_reasons", "filters_blocked", "breach_flags"}


def _value(name: str, schema: Any) -> Any:
    if isinstance(schema, list):  # union: the first non-null branch
        branch = next((b for b in schema if b != "null"), "null")
        return _value(name, branch)
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        if logical == "timestamp-nanos":
            return EXAMPLE_TS_NS
        if logical == "date":
            return _EXAMPLE_DATE
        if logical == "decimal":
            return Decimal("1234.500000")
        kind = schema["type"]
        if kind == "array":
            return [] if name in _EMPTY_ARRAYS else [_value(name, schema["items"])]
        if kind == "record":
            return {f["name"]: _value(f["name"], f["type"]) for f in schema["fields"]}
        return _value(name, kind)
    if schema == "string":
        return _STRINGS.get(name, f"{name}-1")
    if schema in ("int", "long"):
        return 100 if name in ("size", "qty", "v", "volume", "bid_size", "ask_size") else 1
    if schema in ("double", "float"):
        return 600.25
    if schema == "boolean":
        return True
    if schema == "bytes":
        return b"\x01"
    return None


_PER_TOPIC: dict[str, dict[str, Any]] = {
    "ingest_gaps": {"status": "repaired", "error": None},
    "execution_control": {"account_id": "VA0000001", "command": "halt", "reason": "example"},
}


def example_record(catalog: Catalog, topic: str) -> dict[str, Any]:
    spec = catalog[topic]
    record = {f["name"]: _value(f["name"], f["type"]) for f in spec.schema["fields"]}
    record.update(_PER_TOPIC.get(topic, {}))
    return record
