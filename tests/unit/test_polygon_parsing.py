from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.polygon import parsing
from connectors.polygon.dedupe import SeenIndex
from kafkaio.errors import RetryableError
from kafkaio.retry import Backoff, retry
from kafkaio.settings import KafkaSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
from tests.fakes import InMemoryRegistry

prices = st.floats(min_value=0.01, max_value=10_000, allow_nan=False)
ms = st.integers(min_value=1_500_000_000_000, max_value=2_500_000_000_000)
sizes = st.integers(min_value=0, max_value=10_000_000)
seqs = st.integers(min_value=0, max_value=2**62)
trade_events = st.fixed_dictionaries(
    {
        "ev": st.just("T"),
        "sym": st.sampled_from(["SPY", "QQQ"]),
        "i": st.text(min_size=1, max_size=12),
        "x": st.integers(1, 30),
        "p": prices,
        "s": sizes,
        "c": st.lists(st.integers(0, 60), max_size=4),
        "t": ms,
        "q": seqs,
        "z": st.integers(1, 3),
    }
)
quote_events = st.fixed_dictionaries(
    {
        "ev": st.just("Q"),
        "sym": st.sampled_from(["SPY", "QQQ"]),
        "bx": st.integers(1, 30),
        "bp": prices,
        "bs": sizes,
        "ax": st.integers(1, 30),
        "ap": prices,
        "as": sizes,
        "c": st.one_of(st.integers(0, 9), st.lists(st.integers(0, 9), max_size=2)),
        "t": ms,
        "q": seqs,
        "z": st.integers(1, 3),
    }
)

SERDE = AvroSerde(InMemoryRegistry(), KafkaSettings(), catalog())


@given(trade_events, st.integers(min_value=0, max_value=2**62))
def test_trade_events_parse_and_encode(ev: dict[str, Any], ts_ingest: int) -> None:
    record = parsing.ws_trade(ev, ts_ingest)
    assert record["ts"] == ev["t"] * 1_000_000
    assert (record["price"], record["size"], record["exchange"], record["seq"]) == (ev["p"], ev["s"], ev["x"], ev["q"])
    assert record["trade_id"] == ev["i"]
    assert record["ts_ingest"] == ts_ingest
    assert SERDE.decode(SERDE.encode("market_trades", record), "market_trades") == record


@given(quote_events)
def test_quote_events_parse_and_encode(ev: dict[str, Any]) -> None:
    record = parsing.ws_quote(ev, 1)
    expected = [ev["c"]] if isinstance(ev["c"], int) else ev["c"]
    assert record["conditions"] == expected
    assert (record["bid"], record["ask"], record["bid_size"], record["ask_size"]) == (
        ev["bp"],
        ev["ap"],
        ev["bs"],
        ev["as"],
    )
    assert SERDE.decode(SERDE.encode("market_quotes", record), "market_quotes") == record


@pytest.mark.parametrize("field", ["sym", "t", "p", "s", "x", "q", "i"])
def test_missing_trade_field_is_named(field: str) -> None:
    ev = {"ev": "T", "sym": "SPY", "i": "1", "x": 4, "p": 1.0, "s": 1, "c": [], "t": 1, "q": 1, "z": 2}
    del ev[field]
    with pytest.raises(parsing.ParseError, match=rf"^T\.{field}: missing$"):
        parsing.ws_trade(ev, 0)


def test_non_integer_time_is_rejected_and_wrong_types_fail_at_encode() -> None:
    ev = {"ev": "T", "sym": "SPY", "i": "1", "x": 4, "p": 1.0, "s": 1, "c": [], "t": "soon", "q": 1, "z": 2}
    with pytest.raises(parsing.ParseError, match=r"T\.t"):
        parsing.ws_trade(ev, 0)
    ev["t"], ev["p"] = 1, "one dollar"
    record = parsing.ws_trade(ev, 0)
    with pytest.raises(Exception, match=r"market_trades\.price"):
        SERDE.encode("market_trades", record)


def test_minute_bar_times_are_bar_start_and_end() -> None:
    ev = {
        "ev": "AM",
        "sym": "SPY",
        "v": 1000,
        "av": 5000,
        "op": 600.0,
        "vw": 600.5,
        "o": 600.0,
        "c": 601.0,
        "h": 601.5,
        "l": 599.5,
        "a": 600.2,
        "z": 100,
        "s": 1_795_446_000_000,
        "e": 1_795_446_060_000,
    }
    bar = parsing.ws_minute_bar(ev, 0)
    assert bar["ts"] == 1_795_446_000_000 * 1_000_000
    assert bar["ts_end"] - bar["ts"] == 60_000_000_000
    assert bar["aggregated_from"] == "polygon_am"
    assert SERDE.decode(SERDE.encode("bars_1m", bar), "bars_1m") == bar


def test_rest_rows_use_the_sip_time_in_whole_milliseconds_as_the_websocket_does() -> None:
    row = {
        "conditions": [12],
        "exchange": 4,
        "id": "9",
        "participant_timestamp": 5,
        "price": 600.1,
        "sequence_number": 77,
        "sip_timestamp": 1_795_446_000_123_456_789,
        "size": 100.0,
        "tape": 2,
    }
    record = parsing.rest_trade("SPY", row, 0)
    assert record["ts"] == 1_795_446_000_123_000_000  # a repaired event equals its live copy
    ws = parsing.ws_trade(
        {
            "ev": "T",
            "sym": "SPY",
            "i": "9",
            "x": 4,
            "p": 600.1,
            "s": 100,
            "c": [12],
            "t": 1_795_446_000_123,
            "q": 77,
            "z": 2,
        },
        0,
    )
    assert ws["ts"] == record["ts"]
    quote = parsing.rest_quote(
        "SPY",
        {
            "ask_exchange": 1,
            "ask_price": 1.0,
            "ask_size": 1,
            "bid_exchange": 1,
            "bid_price": 0.9,
            "bid_size": 1,
            "sequence_number": 3,
            "sip_timestamp": 5_999_999,
        },
        0,
    )
    assert quote["ts"] == 5_000_000
    assert record["size"] == 100
    assert record["source"] == "rest"


def test_option_snapshot_missing_greeks_are_nulls() -> None:
    row = {
        "details": {
            "ticker": "O:SPY261120C00700000",
            "expiration_date": "2026-11-20",
            "contract_type": "call",
            "strike_price": 700.0,
        },
        "last_quote": {"bid": 0.0, "ask": 0.01, "last_updated": 10},
        "open_interest": 5,
        "underlying_asset": {"ticker": "SPY", "price": 600.0, "last_updated": 12},
        "day": {"volume": 0},
    }
    record = parsing.option_snapshot("SPY", row, 0)
    assert record["ts"] == 12
    assert (record["delta"], record["gamma"], record["theta"], record["vega"], record["iv"]) == (None,) * 5
    assert record["volume"] == 0
    assert record["last"] is None
    SERDE.encode("options_chain", record)
    del row["last_quote"], row["underlying_asset"]
    with pytest.raises(parsing.ParseError, match="no venue timestamp"):
        parsing.option_snapshot("SPY", row, 0)


def test_seen_index_keeps_keys_for_a_window_in_two_generations() -> None:
    index = SeenIndex(window_ns=10)
    base = {"symbol": "SPY", "exchange": 4}
    assert index.add_new("market_trades", {**base, "trade_id": "a", "ts": 100})
    assert not index.add_new("market_trades", {**base, "trade_id": "a", "ts": 100})
    assert index.seen("market_trades", {**base, "trade_id": "a", "ts": 100})
    assert index.add_new("market_trades", {**base, "trade_id": "a2", "ts": 105})  # same generation
    # 100 ns later a new generation starts; a is still remembered (at least one window after it came) ...
    index.add("market_trades", {**base, "trade_id": "b", "ts": 200})
    assert index.seen("market_trades", {**base, "trade_id": "a", "ts": 100})
    assert not index.add_new("market_trades", {**base, "trade_id": "a2", "ts": 105})
    # ... and forgotten when the next one starts, while b (one generation back) is not
    index.add("market_trades", {**base, "trade_id": "c", "ts": 300})
    assert not index.seen("market_trades", {**base, "trade_id": "a", "ts": 100})
    assert index.seen("market_trades", {**base, "trade_id": "b", "ts": 200})
    assert index.tracks[("market_trades", "SPY")].last_ts == 300


def test_backoff_is_jittered_exponential_and_capped() -> None:
    import random

    backoff = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**n)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_retry_gives_up_at_the_deadline_without_sleeping() -> None:
    clock = [0.0]
    calls = []

    def failing() -> None:
        calls.append(clock[0])
        raise RetryableError("down")

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with pytest.raises(RetryableError, match="gave up"):
        retry(failing, what="thing", deadline_s=30, backoff=Backoff(1.0, 8.0), now=lambda: clock[0], sleep=sleep)
    assert len(calls) > 3
    assert clock[0] <= 30
