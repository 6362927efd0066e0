"""A synthetic session as topic records, without Kafka: what ingest would publish for it.

The same generator and the same Polygon parsing as the live path (WebSocket events -> ``market_trades``
and ``market_quotes`` records, ``ts_ingest`` = event time + 2 ms as in a simulated ingest). For tests,
benchmarks and the replay of sessions that were never captured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from connectors.polygon.parsing import SIMULATED_LATENCY_NS, ws_quote, ws_trade
from schemas.topics import MARKET_QUOTES, MARKET_TRADES

from .generator import Session


def session_records(
    day: dt.date, symbols: list[str], seed: int, start: str | None = None, end: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(topic, record) for every trade and quote of the session, in publication order."""
    for ev in Session(day, symbols, seed, start, end).stream():
        kind = ev["ev"]
        if kind == "T":
            record = ws_trade(ev, 0)
            topic = MARKET_TRADES
        elif kind == "Q":
            record = ws_quote(ev, 0)
            topic = MARKET_QUOTES
        else:
            continue
        record["ts_ingest"] = record["ts"] + SIMULATED_LATENCY_NS
        yield topic, record
