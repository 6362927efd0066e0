"""The synthetic session generator: determinism and microstructure."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict

import pytest

from connectors.synthetic.generator import MINUTE_NS, Session, session_times
from connectors.synthetic.options import black_scholes, chain
from kafkaio.errors import ConfigError

DAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def morning() -> Session:
    return Session(DAY, ["SPY", "QQQ"], 3, "09:00", "11:00")


def test_same_seed_same_events_and_windows_agree() -> None:
    a = list(Session(DAY, ["SPY"], 9, "10:00", "10:05").stream())
    b = list(Session(DAY, ["SPY"], 9, "10:00", "10:05").stream())
    c = list(Session(DAY, ["SPY"], 10, "10:00", "10:05").stream())
    assert a == b
    assert a != c
    # a narrower window is exactly the matching part of a wider one (minutes are independent draws)
    wide = [e for e in Session(DAY, ["SPY"], 9, "09:55", "10:10").stream() if e["ev"] != "AM"]
    inner = [e for e in a if e["ev"] != "AM"]
    assert [e for e in wide if inner[0]["t"] <= e["t"] <= inner[-1]["t"]][: len(inner)] == inner
    # adding a symbol does not change another symbol's events
    both = [e for e in Session(DAY, ["SPY", "QQQ"], 9, "10:00", "10:05").stream() if e.get("sym") == "SPY"]
    assert both == [e for e in a if e.get("sym") == "SPY"]


def test_calendar_half_days_and_closed_days() -> None:
    half = session_times(dt.date(2026, 11, 27))
    assert half.half_day
    assert (half.close_ns - half.open_ns) == int(3.5 * 3600 * 1e9)
    assert not session_times(DAY).half_day
    with pytest.raises(ConfigError, match="not an NYSE trading day"):
        session_times(dt.date(2026, 11, 26))  # Thanksgiving
    with pytest.raises(ConfigError, match="not an NYSE trading day"):
        session_times(dt.date(2026, 11, 21))  # Saturday


def test_trades_happen_at_or_inside_the_nbbo(morning: Session) -> None:
    nbbo: dict[str, tuple[float, float]] = {}
    checked = 0
    for ev in morning.stream():
        if ev["ev"] == "Q":
            assert ev["bp"] < ev["ap"]
            nbbo[ev["sym"]] = (ev["bp"], ev["ap"])
        elif ev["ev"] == "T":
            bid, ask = nbbo[ev["sym"]]
            assert bid - 1e-9 <= ev["p"] <= ask + 1e-9
            checked += 1
    assert checked > 1000


def test_quotes_outnumber_trades_and_sequences_increase(morning: Session) -> None:
    counts: dict[str, int] = defaultdict(int)
    last_seq: dict[str, int] = {}
    for ev in morning.stream():
        counts[ev["ev"]] += 1
        if ev["ev"] in ("T", "Q"):
            assert ev["q"] > last_seq.get(ev["sym"], -1)
            last_seq[ev["sym"]] = ev["q"]
    assert counts["Q"] > 3 * counts["T"]


def test_volume_is_u_shaped_over_rth() -> None:
    session = Session(DAY, ["SPY"], 4)
    plan = session.plans["SPY"]
    open_minute = (session.times.open_ns - session.times.pre_open_ns) // MINUTE_NS
    close_minute = (session.times.close_ns - session.times.pre_open_ns) // MINUTE_NS
    first = sum(plan.n_trades[open_minute : open_minute + 30])
    middle = sum(plan.n_trades[open_minute + 180 : open_minute + 210])
    last = sum(plan.n_trades[close_minute - 30 : close_minute])
    premarket = sum(plan.n_trades[open_minute - 30 : open_minute])
    assert first > 2 * middle
    assert last > middle
    assert middle > 3 * premarket


def test_minute_bars_agree_with_the_trades(morning: Session) -> None:
    events = list(morning.stream())
    bars = [e for e in events if e["ev"] == "AM" and e["sym"] == "SPY"]
    assert bars
    for bar in bars[:30]:
        trades = [e for e in events if e["ev"] == "T" and e["sym"] == "SPY" and bar["s"] <= e["t"] < bar["e"]]
        regular = [t for t in trades if not set(t["c"]) & {12, 37}]
        assert bar["v"] == sum(t["s"] for t in trades)
        assert bar["h"] == max(t["p"] for t in regular)
        assert bar["l"] == min(t["p"] for t in regular)
        assert bar["o"] == regular[0]["p"]
        assert bar["c"] == regular[-1]["p"]


def test_trends_and_reversals(morning: Session) -> None:
    drift = Session(DAY, ["SPY"], 3).plans["SPY"].drift
    signs = [d > 0 for d in drift]
    flips = sum(1 for a, b in itertools.pairwise(signs) if a != b)
    assert flips >= 10


def test_option_chain_prices_and_missing_greeks() -> None:
    as_of = int(dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC).timestamp()) * 10**9
    rows = chain("SPY", 600.0, as_of, [DAY, dt.date(2026, 11, 23)], seed=1)
    assert rows
    atm = [r for r in rows if r["details"]["strike_price"] == 600.0]
    assert all("greeks" in r for r in atm)
    assert any("greeks" not in r for r in rows)
    for row in rows:
        quote = row["last_quote"]
        assert 0 <= quote["bid"] < quote["ask"]
        assert quote["last_updated"] <= as_of
    call = black_scholes(600, 600, 30 / 365, 0.2, True)
    put = black_scholes(600, 600, 30 / 365, 0.2, False)
    assert 0.5 < call["delta"] < 0.6
    assert call["price"] - put["price"] == pytest.approx(600 - 600 * pow(2.718281828, -0.04 * 30 / 365), abs=1e-3)


def test_burst_minutes_trade_ten_times_as_much_and_change_nothing_when_off() -> None:
    from collections import Counter

    from connectors.synthetic.generator import MINUTE_NS

    plain = Session(DAY, ["SPY", "QQQ"], 4, "10:00", "10:20")
    same = Session(DAY, ["SPY", "QQQ"], 4, "10:00", "10:20", bursts=0)
    assert list(plain.stream()) == list(same.stream())
    bursty = Session(DAY, ["SPY", "QQQ"], 4, "10:00", "10:20", bursts=3)
    assert len(bursty.bursts) == 3
    assert bursty.bursts == Session(DAY, ["SPY", "QQQ"], 4, "10:00", "10:20", bursts=3).bursts  # seeded

    def per_minute(session: Session) -> Counter[int]:
        start = session.times.pre_open_ns
        return Counter((e["t"] * 1_000_000 - start) // MINUTE_NS for e in session.stream() if e["ev"] in ("T", "Q"))

    calm, busy = per_minute(plain), per_minute(bursty)
    for minute in bursty.bursts:
        assert 7 * calm[minute] < busy[minute] < 13 * calm[minute]
    quiet = [m for m in calm if m not in bursty.bursts]
    assert sum(busy[m] for m in quiet) < 1.3 * sum(calm[m] for m in quiet)
