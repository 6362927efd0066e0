"""Polygon events and REST rows -> topic records, at the boundary.

Venue times become UTC nanoseconds (WebSocket ``t``/``s``/``e`` are SIP milliseconds; REST
``sip_timestamp`` is nanoseconds). ``ts_ingest`` is passed in by the caller. A missing field or a
field of the wrong kind raises ParseError naming the field; the caller sends the raw event to the DLQ.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from kafkaio.errors import ScalpError

log = logging.getLogger("connectors.polygon.ingest")  # status messages are the ingest's to report
MS = 1_000_000  # ns per ms
Record = dict[str, Any]


# ts_ingest of a simulated session (synthetic sessions, replays of them): event time + this, so a simulated
# session is reproducible byte for byte
SIMULATED_LATENCY_NS = 2_000_000


@dataclass(frozen=True)
class IngestClock:
    """ts_ingest source. Live: the receipt wall clock. Synthetic sessions: event time + a fixed latency,
    so a simulated session is reproducible byte for byte (the whole session, clocks included, is simulated)."""

    simulated_latency_ns: int | None = None

    def stamp(self, record: dict[str, Any], receipt_ns: int) -> None:
        if self.simulated_latency_ns is not None:
            record["ts_ingest"] = record["ts"] + self.simulated_latency_ns
        else:
            record["ts_ingest"] = receipt_ns


def log_status(event: dict[str, Any]) -> None:
    """A status message of the stream, logged at the level it deserves."""
    status, message = event.get("status"), event.get("message")
    if status in ("connected", "auth_success", "success"):
        log.debug("Polygon status %s: %s", status, message)
    elif status == "session_end":
        log.info("Polygon session ended: %s", message)
    else:
        log.warning("Polygon status %s: %s", status, message)


class VenueClock:
    """How far ahead event time may run: ``ahead_s`` past the venue clock. Live, the clock is the later of
    the receipt time and the latest event time accepted; a simulated session's clock is its own event time
    alone (none yet: no bound), so a past or future session replays the same whatever the wall clock says.
    An outlier (a far-future stamp) would move the de-duplication generations and gap checks ahead."""

    NONE = (1 << 63) - 1

    def __init__(self, ahead_s: float, simulated: bool) -> None:
        self.ahead_s = ahead_s
        self.ahead_ns = int(ahead_s * 1e9)
        self.simulated = simulated
        self.venue_ns: int | None = None  # the latest event time accepted

    def horizon(self, receipt_ns: int) -> int:
        """The latest event time a frame received at ``receipt_ns`` may carry."""
        venue = self.venue_ns
        if not self.simulated:
            venue = receipt_ns if venue is None else max(venue, receipt_ns)
        return self.NONE if venue is None else venue + self.ahead_ns

    def observe(self, ts: int) -> None:
        if self.venue_ns is None or ts > self.venue_ns:
            self.venue_ns = ts

    def outlier(self, kind: str, ts: int, horizon: int) -> str:
        """The dead-letter reason of an event at ``ts`` past ``horizon``."""
        ahead = (ts - horizon + self.ahead_ns) / 1e9
        return f"{kind}.t: event time {ts} is {ahead:,.0f} s ahead of the venue clock (limit {self.ahead_s:g} s)"


class ParseError(ScalpError):
    def __init__(self, kind: str, field: str, reason: str) -> None:
        self.kind = kind
        self.field = field
        super().__init__(f"{kind}.{field}: {reason}")


def _int(event: dict[str, Any], field: str, kind: str) -> int:
    try:
        value = event[field]
    except KeyError:
        raise ParseError(kind, field, "missing") from None
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise ParseError(kind, field, f"expected an integer, got {type(value).__name__}")


def _num(event: dict[str, Any], field: str, kind: str) -> float:
    try:
        value = event[field]
    except KeyError:
        raise ParseError(kind, field, "missing") from None
    if type(value) in (int, float):
        return float(value)
    raise ParseError(kind, field, f"expected a number, got {type(value).__name__}")


def _str(event: dict[str, Any], field: str, kind: str) -> str:
    try:
        value = event[field]
    except KeyError:
        raise ParseError(kind, field, "missing") from None
    if type(value) is str:
        return value
    if type(value) is int:  # some feeds send numeric ids
        return str(value)
    raise ParseError(kind, field, f"expected a string, got {type(value).__name__}")


def _ints(value: Any, kind: str, field: str) -> list[int]:
    if value is None:
        return []
    if type(value) is int:
        return [value]
    if type(value) is list and all(type(v) is int for v in value):
        return value
    raise ParseError(kind, field, "expected a list of integers")


def _ms(event: dict[str, Any], field: str, kind: str) -> int:
    value = event.get(field)
    if type(value) is not int:
        _int(event, field, kind)  # raises the precise error
        value = int(value)  # type: ignore[arg-type]  # an integral float
    return value * MS


# T and Q events encoded as they arrive, without building the record (the ingest hot path, through
# AvroSerde.field_encoder): record field -> event key, the values ws_trade/ws_quote give fields that the
# event leaves out, and the ones they always give. The caller puts ts and ts_ingest in the event under
# TS_KEY and TS_INGEST_KEY (Polygon's keys never start with "_"). tests/unit/test_ingest_hot_path.py holds
# both ways to the same bytes.
TS_KEY = "_ts"
TS_INGEST_KEY = "_ts_ingest"
WS_TRADE_KEYS = {
    "symbol": "sym",
    "ts": TS_KEY,
    "price": "p",
    "size": "s",
    "conditions": "c",
    "exchange": "x",
    "tape": "z",
    "seq": "q",
    "trade_id": "i",
    "ts_participant": "_ts_participant",
    "ts_ingest": TS_INGEST_KEY,
}
WS_TRADE_DEFAULTS: dict[str, Any] = {"conditions": [], "tape": None, "ts_participant": None}
WS_QUOTE_KEYS = {
    "symbol": "sym",
    "ts": TS_KEY,
    "bid": "bp",
    "ask": "ap",
    "bid_size": "bs",
    "ask_size": "as",
    "bid_exchange": "bx",
    "ask_exchange": "ax",
    "conditions": "c",
    "tape": "z",
    "seq": "q",
    "ts_ingest": TS_INGEST_KEY,
}
WS_QUOTE_DEFAULTS: dict[str, Any] = {"conditions": [], "tape": None}
WS_CONSTANTS: dict[str, Any] = {"source": "ws"}


def ws_trade(ev: dict[str, Any], ts_ingest: int, source: str = "ws") -> Record:
    """A T event. Types of plain fields are checked when the record is encoded (a mismatch there is
    a SerializationError naming the field, and the raw event goes to the DLQ)."""
    try:
        return {
            "symbol": ev["sym"],
            "ts": _ms(ev, "t", "T"),
            "price": ev["p"],
            "size": ev["s"],
            "conditions": ev.get("c") or [],
            "exchange": ev["x"],
            "tape": ev.get("z"),
            "seq": ev["q"],
            "trade_id": ev["i"],
            "ts_participant": None,
            "ts_ingest": ts_ingest,
            "source": source,
        }
    except KeyError as exc:
        raise ParseError("T", str(exc.args[0]), "missing") from None


def ws_quote(ev: dict[str, Any], ts_ingest: int, source: str = "ws") -> Record:
    try:
        conditions = ev.get("c")
        return {
            "symbol": ev["sym"],
            "ts": _ms(ev, "t", "Q"),
            "bid": ev["bp"],
            "ask": ev["ap"],
            "bid_size": ev["bs"],
            "ask_size": ev["as"],
            "bid_exchange": ev["bx"],
            "ask_exchange": ev["ax"],
            "conditions": [conditions] if type(conditions) is int else conditions or [],
            "tape": ev.get("z"),
            "seq": ev["q"],
            "ts_ingest": ts_ingest,
            "source": source,
        }
    except KeyError as exc:
        raise ParseError("Q", str(exc.args[0]), "missing") from None


def ws_minute_bar(ev: dict[str, Any], ts_ingest: int) -> Record:
    vwap = ev.get("vw")
    return {
        "symbol": _str(ev, "sym", "AM"),
        "ts": _int(ev, "s", "AM") * MS,
        "ts_end": _int(ev, "e", "AM") * MS,
        "o": _num(ev, "o", "AM"),
        "h": _num(ev, "h", "AM"),
        "l": _num(ev, "l", "AM"),
        "c": _num(ev, "c", "AM"),
        "v": _int(ev, "v", "AM"),
        "vwap": _opt_num(vwap),
        "trades": None,
        "aggregated_from": "polygon_am",
        "ts_ingest": ts_ingest,
    }


def _sip_ms(row: dict[str, Any], what: str) -> int:
    """REST's SIP time (ns) in whole milliseconds, as the WebSocket gives it: an event repaired from REST is
    then the record its live copy would have been (with the nanoseconds, a session with a reconnect gave other
    features than the same session without one, and a replay of each its own)."""
    return _int(row, "sip_timestamp", what) // MS * MS


def rest_trade(symbol: str, row: dict[str, Any], ts_ingest: int) -> Record:
    participant = row.get("participant_timestamp")
    return {
        "symbol": symbol,
        "ts": _sip_ms(row, "trade"),
        "price": _num(row, "price", "trade"),
        "size": _int(row, "size", "trade"),
        "conditions": _ints(row.get("conditions"), "trade", "conditions"),
        "exchange": _int(row, "exchange", "trade"),
        "tape": row.get("tape"),
        "seq": _int(row, "sequence_number", "trade"),
        "trade_id": _str(row, "id", "trade"),
        "ts_participant": participant if type(participant) is int else None,
        "ts_ingest": ts_ingest,
        "source": "rest",
    }


def rest_quote(symbol: str, row: dict[str, Any], ts_ingest: int) -> Record:
    return {
        "symbol": symbol,
        "ts": _sip_ms(row, "quote"),
        "bid": _num(row, "bid_price", "quote"),
        "ask": _num(row, "ask_price", "quote"),
        "bid_size": _int(row, "bid_size", "quote"),
        "ask_size": _int(row, "ask_size", "quote"),
        "bid_exchange": _int(row, "bid_exchange", "quote"),
        "ask_exchange": _int(row, "ask_exchange", "quote"),
        "conditions": _ints(row.get("conditions"), "quote", "conditions"),
        "tape": row.get("tape"),
        "seq": _int(row, "sequence_number", "quote"),
        "ts_ingest": ts_ingest,
        "source": "rest",
    }


def rest_minute_bar(symbol: str, row: dict[str, Any], ts_ingest: int) -> Record:
    start_ms = _int(row, "timestamp", "agg")
    vwap = row.get("vwap")
    trades = row.get("transactions")
    return {
        "symbol": symbol,
        "ts": start_ms * MS,
        "ts_end": (start_ms + 60_000) * MS,
        "o": _num(row, "open", "agg"),
        "h": _num(row, "high", "agg"),
        "l": _num(row, "low", "agg"),
        "c": _num(row, "close", "agg"),
        "v": _int(row, "volume", "agg"),
        "vwap": _opt_num(vwap),
        "trades": trades if type(trades) is int else None,
        "aggregated_from": "rest",
        "ts_ingest": ts_ingest,
    }


def _opt_num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _opt_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def option_snapshot(underlying_symbol: str, row: dict[str, Any], ts_ingest: int) -> Record:
    """One /v3/snapshot/options row. ts is the latest venue time in it (quote, trade or underlying)."""
    details = row.get("details") or {}
    quote = row.get("last_quote") or {}
    trade = row.get("last_trade") or {}
    greeks = row.get("greeks") or {}
    day = row.get("day") or {}
    underlying = row.get("underlying_asset") or {}
    times = [
        t
        for t in (quote.get("last_updated"), trade.get("sip_timestamp"), underlying.get("last_updated"))
        if type(t) is int
    ]
    if not times:
        raise ParseError("option", "last_quote.last_updated", "no venue timestamp in the snapshot")
    expiration = _str(details, "expiration_date", "option")
    try:
        expiry = dt.date.fromisoformat(expiration)
    except ValueError:
        raise ParseError("option", "details.expiration_date", f"not a date: {expiration!r}") from None
    contract_type = _str(details, "contract_type", "option")
    if contract_type not in ("call", "put"):
        raise ParseError("option", "details.contract_type", f"expected call or put, got {contract_type!r}")
    return {
        "contract_symbol": _str(details, "ticker", "option"),
        "ts": max(times),
        "underlying": underlying.get("ticker") or underlying_symbol,
        "expiration": expiry,
        "strike": _num(details, "strike_price", "option"),
        "contract_type": contract_type,
        "bid": _opt_num(quote.get("bid")),
        "ask": _opt_num(quote.get("ask")),
        "last": _opt_num(trade.get("price")),
        "volume": _opt_int(day.get("volume")),
        "open_interest": _opt_int(row.get("open_interest")),
        "iv": _opt_num(row.get("implied_volatility")),
        "delta": _opt_num(greeks.get("delta")),
        "gamma": _opt_num(greeks.get("gamma")),
        "theta": _opt_num(greeks.get("theta")),
        "vega": _opt_num(greeks.get("vega")),
        "underlying_price": _opt_num(underlying.get("price")),
        "ts_ingest": ts_ingest,
    }
