"""Gap repair: what REST returns for a gap of the WebSocket stream, and the ``ingest_gaps`` record of it."""

from __future__ import annotations

import logging
from typing import Any

from schemas.topics import MARKET_QUOTES, MARKET_TRADES

from .rest import PolygonRest

log = logging.getLogger("connectors.polygon.ingest")


def fetch_gap(rest: PolygonRest, topic: str, symbol: str, from_ns: int, to_ns: int) -> list[dict[str, Any]]:
    """The records of ``topic`` for ``symbol`` in [from_ns, to_ns] from REST."""
    # WebSocket times are whole milliseconds: include the rest of the last millisecond
    to_inclusive = to_ns + 999_999
    if topic == MARKET_TRADES:
        rows = rest.trades(symbol, from_ns, to_inclusive)
    elif topic == MARKET_QUOTES:
        rows = rest.quotes(symbol, from_ns, to_inclusive)
    else:
        rows = rest.minute_bars(symbol, from_ns // 1_000_000, to_ns // 1_000_000)
    return list(rows)


def gap_record(
    symbol: str, kind: str, from_ns: int, to_ns: int, reason: str, recovered: int, error: str | None
) -> dict[str, Any]:
    """The ``ingest_gaps`` record of a gap (logged: an error when it could not be repaired)."""
    if error:
        log.error("gap %s %s [%d, %d] (%s) could not be repaired: %s", symbol, kind, from_ns, to_ns, reason, error)
    else:
        log.info("gap %s %s [%d, %d] (%s): %d events recovered", symbol, kind, from_ns, to_ns, reason, recovered)
    return {
        "id": f"{symbol}:{kind}:{from_ns}",
        "symbol": symbol,
        "kind": kind,
        "ts": from_ns,
        "ts_from": from_ns,
        "ts_to": to_ns,
        "reason": reason,
        "events_recovered": recovered,
        "status": "unrepaired" if error else "repaired",
        "error": error,
    }
