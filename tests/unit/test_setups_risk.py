"""Setup state machines (their transition tables), filters, the risk module's vetoes, policies, the merge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.core.digests import Digests
from streams.core.errors import PolicyError
from streams.core.features import Snapshot
from streams.core.merge import QUOTE, TRADE, Merger
from streams.core.policy import POLICY_FILE, Filters, RiskParams, SetupParams, load_policy, parse_policy
from streams.core.risk import Market, RiskEngine
from streams.core.sessions import Calendar
from streams.core.setups import SETUPS, Ema20Pullback, HodLodBreakout, SigmaReversion, VwapReclaim, check_filters

ET = ZoneInfo("America/New_York")
NS = 10**9
T0 = int(dt.datetime(2026, 11, 18, 10, 30, tzinfo=ET).timestamp()) * NS
DIGESTS = Digests("commit", "policy", "env")


def snap(**kw: Any) -> Snapshot:
    base: dict[str, Any] = {
        "symbol": "SPY",
        "ts": T0,
        "session": "rth",
        "vwap": 600.0,
        "sigma_upper": 601.0,
        "sigma_lower": 599.0,
        "ema20": 600.0,
        "ema50": 599.0,
        "ema20_slope": 1.0,
        "rvol": 1.2,
        "hod": 601.0,
        "lod": 598.0,
        "prev_close": 597.0,
        "cvd": 0.0,
        "ob_imbalance": 0.1,
        "last_price": 600.0,
        "bid": 599.99,
        "ask": 600.01,
        "lookback_min": 60,
        "lookback_days": 5,
        "warm": True,
        "last_trade_ts": T0 - 10**8,
        "last_quote_ts": T0 - 10**8,
        "quote_ok": True,
        "minutes_since_open": 60.0,
        "minutes_to_close": 330.0,
    }
    base.update(kw)
    return Snapshot(**base)


# --- transition tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(SETUPS.values()))
def test_transition_tables_only_name_declared_states(cls: Any) -> None:
    for (state, _observation), (nxt, side) in cls.TRANSITIONS.items():
        assert state in cls.STATES
        assert nxt in cls.STATES
        assert side in (None, "long", "short")
        if side is not None:
            assert nxt == "cooldown"  # every candidate is followed by a cooldown
    assert ("cooldown", "cooled") in cls.TRANSITIONS
    assert cls.INITIAL in cls.STATES


def _walk(setup: Any, snaps: list[Snapshot]) -> tuple[list[str], list[Any]]:
    mem = setup.memory()
    states, candidates = [], []
    for s in snaps:
        c = setup.step(s, mem)
        states.append(mem.state)
        if c is not None:
            candidates.append(c)
    return states, candidates


def test_vwap_reclaim_arms_below_and_fires_long_on_the_reclaim_then_cools_down() -> None:
    setup = VwapReclaim(SetupParams(arm_bps=4, trigger_bps=1, cooldown_s=60))
    prices = [600.0, 599.7, 599.9, 600.1, 599.7, 600.1]  # near, far below, below, above (fire), ...
    snaps = [snap(ts=T0 + i * NS, last_price=p) for i, p in enumerate(prices)]
    snaps.append(snap(ts=T0 + 120 * NS, last_price=600.0))  # cooled
    states, candidates = _walk(setup, snaps)
    assert states == ["flat", "below", "below", "cooldown", "cooldown", "cooldown", "flat"]
    assert [(c.side, c.setup) for c in candidates] == [("long", "vwap_reclaim")]


def test_vwap_reject_fires_short() -> None:
    setup = VwapReclaim(SetupParams(arm_bps=4, trigger_bps=1))
    snaps = [snap(ts=T0 + i * NS, last_price=p) for i, p in enumerate([600.3, 600.2, 599.9])]
    states, candidates = _walk(setup, snaps)
    assert states == ["above", "above", "cooldown"]
    assert candidates[0].side == "short"


def test_ema20_pullback_needs_trend_pullback_and_resumption() -> None:
    setup = Ema20Pullback(SetupParams(min_slope_bps_per_min=0.5, touch_bps=1.0))
    seq = [
        snap(ts=T0, last_price=600.3),  # uptrend, away above
        snap(ts=T0 + NS, last_price=600.02),  # touch
        snap(ts=T0 + 2 * NS, last_price=600.2),  # resumed: long
    ]
    states, candidates = _walk(setup, seq)
    assert states == ["uptrend", "up_pullback", "cooldown"]
    assert candidates[0].side == "long"
    # a flat slope is no trend: nothing arms
    states, candidates = _walk(setup, [snap(ts=T0, last_price=600.3, ema20_slope=0.1)])
    assert states == ["idle"]
    assert not candidates
    # a pullback that breaks through ema20 resets instead of firing
    states, _ = _walk(setup, [snap(ts=T0, last_price=600.3), snap(last_price=600.0), snap(last_price=599.5)])
    assert states == ["uptrend", "up_pullback", "idle"]


def test_hod_breakout_after_the_range_period() -> None:
    setup = HodLodBreakout(SetupParams(min_range_minutes=15))
    seq = [
        snap(minutes_since_open=10.0),  # early: still building
        snap(minutes_since_open=16.0),  # inside: armed
        snap(minutes_since_open=17.0, hod=601.5, last_price=601.5),  # new high: long
    ]
    states, candidates = _walk(setup, seq)
    assert states == ["building", "armed", "cooldown"]
    assert candidates[0].side == "long"
    lows = [snap(minutes_since_open=16.0), snap(minutes_since_open=17.0, lod=597.0)]
    assert _walk(setup, lows)[1][0].side == "short"


def test_sigma_reversion_needs_cvd_divergence() -> None:
    setup = SigmaReversion(SetupParams(cvd_lookback=3))
    # price falls below the band while CVD rises, then re-enters: long
    seq = [
        snap(last_price=600.5, cvd=0.0),
        snap(last_price=600.2, cvd=100.0),
        snap(last_price=598.5, cvd=200.0),  # below the band
        snap(last_price=599.5, cvd=300.0),  # inside again, price down and CVD up over the window
    ]
    states, candidates = _walk(setup, seq)
    assert states == ["inside", "inside", "stretched_low", "cooldown"]
    assert candidates[0].side == "long"
    # the same path without divergence (CVD falling with price) just returns to inside
    no_div = [dataclasses.replace(s, cvd=-i * 100.0) for i, s in enumerate(seq)]
    states, candidates = _walk(SigmaReversion(SetupParams(cvd_lookback=3)), no_div)
    assert states[-1] == "inside"
    assert not candidates


# --- filters -------------------------------------------------------------------------------------


def test_each_filter_blocks_on_its_own_condition() -> None:
    f = Filters(min_rvol=1.0, max_spread_bps=2.0, stale_ms=1000, imbalance_min=-0.2, no_trade_open_minutes=5)
    passed, blocked = check_filters(snap(), "long", f)
    assert blocked == []
    assert len(passed) == 8
    cases = {
        "session": snap(session="pre", minutes_since_open=None, minutes_to_close=None),
        "no_trade_open": snap(minutes_since_open=2.0),
        "no_trade_close": snap(minutes_to_close=3.0),
        "min_rvol": snap(rvol=0.5),
        "max_spread": snap(bid=599.8, ask=600.2),
        "imbalance": snap(ob_imbalance=-0.5),
        "stale_data": snap(last_quote_ts=T0 - 5 * NS),
        "warm": snap(warm=False),
    }
    for name, s in cases.items():
        assert check_filters(s, "long", f)[1] == [name], name
    assert check_filters(snap(ob_imbalance=-0.5), "short", f)[1] == []  # imbalance is read on the trade's side
    assert check_filters(snap(quote_ok=False), "long", f)[1] == ["max_spread"]  # a crossed book has no spread


# --- risk ----------------------------------------------------------------------------------------

MARKET = Market(599.99, 600.01, T0 - 10**8, T0 - 10**8)


def signal(i: int = 0, ts: int = T0, status: str = "promoted", **kw: Any) -> dict[str, Any]:
    return {
        "id": f"sig-{i}",
        "symbol": "SPY",
        "ts": ts,
        "setup": kw.pop("setup", f"setup{i}"),
        "side": "long",
        "status": status,
        "reference_price": 600.0,
        **kw,
    }


def engine(**limits: Any) -> RiskEngine:
    return RiskEngine(RiskParams(**limits), Calendar(), DIGESTS)


def fresh(ts: int) -> Market:
    return Market(599.99, 600.01, ts - 10**8, ts - 10**8)


def decide(risk: RiskEngine, sig: dict[str, Any], market: Market | None = None) -> tuple[dict[str, Any], list[str]]:
    out = risk.on_signal(sig, market or fresh(sig["ts"]))
    decision = out[0][1]
    assert out[0][0] == "risk_decisions"
    assert out[-1][0] == "risk_day"
    return decision, [t for t, _ in out]


def test_an_approved_signal_becomes_an_intent_with_consistent_levels() -> None:
    risk = engine(risk_per_trade_usd=60.0, stop_bps=10.0, take_profit_r=2.0, time_stop_min=15)
    decision, topics = decide(risk, signal())
    assert decision["decision"] == "approve"
    assert decision["veto_reasons"] == []
    assert topics == ["risk_decisions", "order_intents", "risk_day"]
    second, _ = decide(risk, signal(1, ts=T0 + 10 * 60 * NS))
    assert second["veto_reasons"] == ["max_open_positions"]  # the first is open until its time stop
    limits = json.loads(decision["limits_snapshot"])
    assert limits["max_trades_per_day"] == 6
    assert limits["trades_taken"] == 0


def test_intent_levels() -> None:
    risk = engine(risk_per_trade_usd=60.0, stop_bps=10.0, take_profit_r=2.0, time_stop_min=15)
    out = dict(risk.on_signal(signal(), MARKET))
    intent = out["order_intents"]
    assert intent["side"] == "buy"
    assert intent["entry_limit"] == 600.01
    assert intent["stop_loss"] == 599.40  # 10 bps below, rounded down to the cent
    assert intent["risk_per_share"] == pytest.approx(0.61)
    assert intent["take_profit"] == 601.23  # entry + 2R, rounded down for a long
    assert intent["qty"] == 98  # floor(60 / 0.61)
    assert intent["time_stop_ts"] == T0 + 15 * 60 * NS
    short = dict(engine(stop_bps=10.0).on_signal(signal(side="short"), MARKET))["order_intents"]
    assert short["side"] == "sell_short"
    assert short["stop_loss"] > short["entry_limit"] > short["take_profit"]


def test_each_veto_reason() -> None:
    minute = 60 * NS
    # not promoted; outside session; spread; stale; every reason listed, not only the first
    d, _ = decide(engine(), signal(status="generated"))
    assert d["veto_reasons"] == ["not_promoted"]
    pre = int(dt.datetime(2026, 11, 18, 8, 0, tzinfo=ET).timestamp()) * NS
    d, _ = decide(engine(), signal(ts=pre), Market(599.99, 600.01, pre, pre))
    assert d["veto_reasons"] == ["outside_session"]
    d, _ = decide(engine(), signal(), Market(599.0, 601.0, T0, T0))
    assert d["veto_reasons"] == ["max_spread"]
    d, _ = decide(engine(), signal(), Market(599.99, 600.01, T0 - 10 * NS, T0))
    assert d["veto_reasons"] == ["stale_data"]
    d, _ = decide(engine(), signal(status="blocked"), Market(599.0, 601.0, T0 - 10 * NS, T0))
    assert d["veto_reasons"] == ["not_promoted", "max_spread", "stale_data"]
    # max trades per day (positions expire at their time stop, so only the count binds)
    risk = engine(max_trades_per_day=2, time_stop_min=1, duplicate_window_s=0)
    for i in range(2):
        assert decide(risk, signal(i, ts=T0 + i * 2 * minute))[0]["decision"] == "approve"
    d, _ = decide(risk, signal(2, ts=T0 + 4 * minute))
    assert d["veto_reasons"] == ["max_trades_per_day"]
    # open positions, then released by the ledger
    risk = engine(max_open_positions=1)
    assert decide(risk, signal(0))[0]["decision"] == "approve"
    assert decide(risk, signal(1, ts=T0 + minute))[0]["veto_reasons"] == ["max_open_positions"]
    risk.on_trade_closed({"ts": T0 + 2 * minute, "r_multiple": 1.0, "intent_id": "oi-sig-0"})
    assert decide(risk, signal(2, ts=T0 + 3 * minute))[0]["decision"] == "approve"
    # cooldown after a loss, daily loss limit, drawdown
    risk = engine(cooldown_after_loss_min=10, daily_loss_limit_r=2.0, max_drawdown_r=2.5, max_open_positions=5)
    risk.on_trade_closed({"ts": T0, "r_multiple": 1.0, "intent_id": "x"})
    risk.on_trade_closed({"ts": T0 + minute, "r_multiple": -1.0, "intent_id": "y"})
    assert decide(risk, signal(0, ts=T0 + 5 * minute))[0]["veto_reasons"] == ["cooldown_after_loss"]
    out = risk.on_trade_closed({"ts": T0 + 6 * minute, "r_multiple": -1.0, "intent_id": "z"})
    assert risk.on_trade_closed({"ts": T0 + 6 * minute, "r_multiple": -1.0, "intent_id": "z"}) == []  # again: once
    day = out[0][1]
    assert day["r_realized"] == -1.0
    assert day["max_drawdown"] == 2.0
    risk.on_trade_closed({"ts": T0 + 7 * minute, "r_multiple": -1.0, "intent_id": "w"})
    d, _ = decide(risk, signal(1, ts=T0 + 30 * minute))
    assert d["veto_reasons"] == ["daily_loss_limit", "max_drawdown"]
    assert risk.risk_day(T0)["breach_flags"] == ["daily_loss", "max_drawdown"]
    # duplicates: the same id, or the same symbol/setup/side within the window
    risk = engine(duplicate_window_s=120, max_open_positions=5)
    assert decide(risk, signal(0, setup="s"))[0]["decision"] == "approve"
    assert decide(risk, signal(0, ts=T0 + minute, setup="s"))[0]["veto_reasons"] == ["duplicate_signal"]
    assert decide(risk, signal(1, ts=T0 + minute, setup="s"))[0]["veto_reasons"] == ["duplicate_signal"]
    assert decide(risk, signal(2, ts=T0 + 3 * minute, setup="s"))[0]["decision"] == "approve"


def test_the_day_rolls_over_in_eastern_time() -> None:
    risk = engine(max_trades_per_day=1)
    assert decide(risk, signal(0))[0]["decision"] == "approve"
    tomorrow = T0 + 24 * 3600 * NS
    d, _ = decide(risk, signal(1, ts=tomorrow), Market(599.99, 600.01, tomorrow, tomorrow))
    assert d["decision"] == "approve"
    assert risk.risk_day(tomorrow)["ts_date"] == dt.date(2026, 11, 19)


def test_risk_state_round_trips() -> None:
    risk = engine(max_trades_per_day=1)
    decide(risk, signal(0))
    again = engine(max_trades_per_day=1)
    again.import_state(risk.export_state())
    assert decide(again, signal(1, ts=T0 + 60 * NS))[0]["veto_reasons"] == ["max_trades_per_day", "max_open_positions"]


# --- policy --------------------------------------------------------------------------------------


def test_shipped_policy_loads_and_its_digest_ignores_formatting(tmp_path: Path) -> None:
    policy = load_policy()
    reformatted = tmp_path / "p.yaml"
    reformatted.write_text("# a comment\n" + POLICY_FILE.read_text().replace("  ", "    "))
    assert load_policy(reformatted).digest == policy.digest
    changed = tmp_path / "q.yaml"
    changed.write_text(POLICY_FILE.read_text().replace("max_trades_per_day: 6", "max_trades_per_day: 7"))
    assert load_policy(changed).digest != policy.digest


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"risk": {"max_trades_per_day": 0}}, "risk.max_trades_per_day: Input should be greater than or equal to 1"),
        ({"risk": {"max_trade_per_day": 3}}, "risk.max_trade_per_day: Extra inputs are not permitted"),
        ({"setups": {"vwap": {}}}, "unknown setup 'vwap'"),
        ({"features": {"snapshot_interval_ms": 7000}}, "snapshot_interval_ms must divide 60000"),
        ({"setups": {"vwap_reclaim": {"filters": {"min_rvol": -1}}}}, "setups.vwap_reclaim.filters: min_rvol"),
        ({"filters": {"sessions": ["lunch"]}}, "filters.sessions.0"),
    ],
)
def test_invalid_policies_name_the_key_and_the_rule(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "p.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("p.yaml: ")


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


# --- merge ---------------------------------------------------------------------------------------


def test_merge_releases_in_event_time_whatever_the_arrival_order() -> None:
    trades = [(10, 1), (20, 3), (30, 5)]
    quotes = [(10, 0), (15, 2), (25, 4), (40, 6)]
    expected = [("q", 10, 0), ("t", 10, 1), ("q", 15, 2), ("t", 20, 3), ("q", 25, 4), ("t", 30, 5), ("q", 40, 6)]
    for order in ("trades_first", "quotes_first", "interleaved"):
        merger = Merger()
        released: list[tuple[str, int, int]] = []
        events = [(TRADE, *t) for t in trades] + [(QUOTE, *q) for q in quotes]
        if order == "quotes_first":
            events = [e for e in events if e[0] == QUOTE] + [e for e in events if e[0] == TRADE]
        elif order == "interleaved":
            events.sort(key=lambda e: e[1])
        for kind, ts, seq in events:
            merger.push(kind, ts, seq, (kind, ts, seq))
            released += [p for _, p in merger.pop_ready()]
        released += [p for _, p in merger.drain()]
        assert released == expected, order


# --- metrics -------------------------------------------------------------------------------------


def test_streams_metrics_are_read_from_the_worker_counters() -> None:
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from streams.core.features import Counters
    from streams.metrics import StreamsMetrics
    from streams.stats import Stats

    stats = Stats(events=10, skipped=2, dead_letters=1, outputs={"features": 3})
    stage = SimpleNamespace(counters=lambda: {"SPY": Counters(late_events=4, outside_session=5)}, held=lambda: 7)
    text = generate_latest(StreamsMetrics(SimpleNamespace(stats=stats, stage=stage)).registry).decode()
    assert "scalp_streams_events_total 10.0" in text
    assert 'scalp_streams_inputs_not_applied_total{reason="late"} 4.0' in text
    assert 'scalp_streams_inputs_not_applied_total{reason="outside_session"} 5.0' in text
    assert 'scalp_streams_outputs_total{topic="features"} 3.0' in text
    assert "scalp_streams_dead_letters_total 1.0" in text
    assert "scalp_streams_held_events 7.0" in text


def test_risk_day_rolls_up_ledger_trades_and_rejected_orders_free_their_slot() -> None:
    minute = 60 * NS
    risk = engine(max_trades_per_day=2, max_open_positions=1, duplicate_window_s=0, cooldown_after_loss_min=0)
    assert decide(risk, signal(0))[0]["decision"] == "approve"
    # the broker rejected it: the slot and the day's trade count come back
    (day,) = dict(risk.on_order_refused({"ts": T0 + minute, "status": "rejected", "intent_id": "oi-sig-0"})).values()
    assert (day["trades_taken"], day["open_positions"]) == (0, 0)
    assert risk.on_order_refused({"ts": T0 + minute, "status": "filled", "intent_id": "oi-sig-0"}) == []
    for i, r in ((1, 1.95), (2, -1.24)):  # two trades (the ledger's R multiples), closed in turn
        assert decide(risk, signal(i, ts=T0 + (2 * i) * minute))[0]["decision"] == "approve"
        out = risk.on_trade_closed({"ts": T0 + (2 * i + 1) * minute, "r_multiple": r, "intent_id": f"oi-sig-{i}"})
    day = dict(out)["risk_day"]
    assert day["trades_taken"] == 2
    assert day["open_positions"] == 0
    assert day["r_realized"] == round(1.95 - 1.24, 6)
    assert day["max_drawdown"] == 1.24  # peak +1.95, then down to +0.71
    assert day["breach_flags"] == ["max_trades"]
    assert decide(risk, signal(3, ts=T0 + 9 * minute))[0]["veto_reasons"] == ["max_trades_per_day"]


def test_every_risk_day_update_has_its_own_sequence_even_at_the_same_event_time() -> None:
    risk = engine(max_trades_per_day=5, max_open_positions=3, duplicate_window_s=0, cooldown_after_loss_min=0)
    days = [dict(risk.on_signal(signal(i, ts=T0), fresh(T0)))["risk_day"] for i in range(3)]  # one instant
    days += [dict(risk.on_trade_closed({"ts": T0, "r_multiple": 1.0, "intent_id": "oi-sig-0"}))["risk_day"]]
    assert [d["seq"] for d in days] == [1, 2, 3, 4]
    assert {d["ts"] for d in days} == {T0}
    assert len({(d["ts_date"], d["seq"], d["ts"]) for d in days}) == 4  # the table's unique key: no collision
    assert risk.risk_day(T0) == days[-1]  # the last update is the module's state (reading it publishes nothing)
    restored = engine(max_trades_per_day=5, max_open_positions=3, duplicate_window_s=0, cooldown_after_loss_min=0)
    restored.import_state(risk.export_state())
    assert (
        dict(restored.on_trade_closed({"ts": T0, "r_multiple": 1.0, "intent_id": "oi-sig-1"}))["risk_day"]["seq"] == 5
    )
    tomorrow = T0 + 24 * 3600 * NS
    assert dict(risk.on_signal(signal(9, ts=tomorrow), fresh(tomorrow)))["risk_day"]["seq"] == 1  # counts from one
