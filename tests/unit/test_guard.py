"""The router's guard: pre-trade limits (each refusal names its limit), the trading state (halt, reduce,
flatten, resume), the end-of-day flatten, records of orders as sending before the broker hears of them,
and a restarted router that finds an order it was sending instead of sending it again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from execution.guard import Guard, TradingState, UnknownCommand, command_of, et_date, for_account
from execution.model import OrderPlan, Submitted, plan_bracket
from execution.paper import PaperBroker, PaperPort
from execution.router import Router
from execution.settings import LimitSettings, PaperSettings
from execution.tracker import Accountant, FeeSchedule
from kafkaio.errors import FatalError
from sinks.audit import AuditWriter
from tests.execution_util import make_intent

NS = 1_000_000_000
MS = 1_000_000
T0 = 1_795_185_600_000_000_000  # 2026-11-20 14:40 UTC (09:40 ET)
CLOSE = T0 + (6 * 3600 + 20 * 60) * NS  # 16:00 ET that day


def intent(signal_id: str = "sig1", ts: int = T0, **over: Any) -> dict[str, Any]:
    return make_intent(signal_id, ts, **{"time_stop_ts": ts + 15 * 60 * NS, **over})


DAY = 24 * 3600 * NS


def guard(**limits: Any) -> Guard:
    """A guard whose end-of-day cutoff is 15:55 ET every day (the router's comes from the exchange calendar)."""
    return Guard(LimitSettings(**limits), lambda now: CLOSE - 5 * 60 * NS + (now - T0) // DAY * DAY)


@pytest.mark.parametrize(
    ("over", "limits", "now", "named"),
    [
        ({"qty": 600}, {}, T0, "max_order_qty: 600 above the limit of 500"),
        ({"qty": 300}, {"max_order_notional_usd": 100_000}, T0, "max_order_notional_usd: 135,030.00 USD"),
        ({"symbol": "TSLA"}, {}, T0, "allowed_symbols: TSLA is not in SPY, QQQ"),
        (
            {"instrument": "option", "side": "buy_to_open", "option_symbol": "QQQ261120C00450000", "qty": 5},
            {},
            T0,
            "is not an OCC option symbol on SPY",
        ),
        ({}, {}, T0 + 11 * NS, "max_intent_age_s: the intent is 11.0 s old (limit 10 s)"),
        ({}, {}, CLOSE - 4 * 60 * NS, "eod_flatten_minutes: past the end-of-day cutoff (15:55 ET)"),
    ],
)
def test_each_limit_refuses_and_names_itself(
    over: dict[str, Any], limits: dict[str, Any], now: int, named: str
) -> None:
    the_intent = intent(ts=now if "max_intent_age_s" not in named else T0, **over)
    reason = guard(**limits).refusal(plan_bracket(the_intent), now, open_positions=0)
    assert reason is not None
    assert named in reason, reason


def test_counted_limits_refuse_the_order_past_them() -> None:
    g = guard(max_orders_per_day=2, max_open_positions=5, max_submits_per_s=10)
    for i in range(2):
        plan = plan_bracket(intent(f"s{i}"))
        assert g.refusal(plan, T0, 0) is None
        g.sent(plan.order_id, T0)
    assert "max_orders_per_day: 2 entries sent today (limit 2)" in str(g.refusal(plan_bracket(intent("s3")), T0, 0))
    tomorrow = T0 + 24 * 3600 * NS
    assert g.refusal(plan_bracket(intent("s4", ts=tomorrow)), tomorrow, 0) is None  # a new day
    assert "max_open_positions: 2 open (limit 2)" in str(guard().refusal(plan_bracket(intent()), T0, open_positions=2))
    burst = guard(max_submits_per_s=2)
    burst.sent("a", T0)
    burst.sent("b", T0 + 500 * MS)
    assert "max_submits_per_s" in str(burst.refusal(plan_bracket(intent(ts=T0 + 900 * MS)), T0 + 900 * MS, 0))
    assert burst.refusal(plan_bracket(intent(ts=T0 + 1001 * MS)), T0 + 1001 * MS, 0) is None  # the first aged out


def test_control_records_drive_the_state_and_unknown_commands_change_nothing() -> None:
    g = guard()
    assert g.state is TradingState.ACTIVE
    g.apply({"command": "halt", "reason": "news", "ts": T0, "issued_by": "ops@desk"})
    assert g.state is TradingState.HALTED
    assert "trading_state: halted: news (by ops@desk)" in str(g.refusal(plan_bracket(intent()), T0, 0))
    with pytest.raises(UnknownCommand, match="unknown control command 'panic'"):
        g.apply({"command": "panic"})
    assert g.state is TradingState.HALTED
    g.apply({"command": "reduce"})
    assert g.state is TradingState.REDUCING
    g.apply({"command": "resume"})
    assert g.refusal(plan_bracket(intent()), T0, 0) is None
    assert command_of({"command": "flatten"}) == "flatten"
    assert for_account({"account_id": "*"}, "VA1")
    assert for_account({"account_id": "VA1"}, "VA1")
    assert not for_account({"account_id": "VA2"}, "VA1")
    assert et_date(CLOSE).isoformat() == "2026-11-20"


# --- the router with a guard -----------------------------------------------------------------------


class Port:
    """The paper broker's port, with a broker listing to look orders up in (as after a restart). It wraps
    the port rather than subclass it: in the compiled build PaperPort is a native class."""

    name = "paper"  # as PaperPort (whose class attributes a compiled build makes instance attributes)

    def __init__(self, broker: PaperBroker) -> None:
        self.paper = PaperPort(broker)
        self.at_broker: dict[str, str] = {}  # tag -> broker id
        self.submitted: list[str] = []

    def submit(self, plan: OrderPlan, ts: int) -> Submitted:
        self.submitted.append(plan.tag)
        return self.paper.submit(plan, ts)

    def cancel(self, broker_id: str, ts: int) -> None:
        self.paper.cancel(broker_id, ts)

    def lookup(self, plan: OrderPlan, fresh: bool) -> str | None:
        return self.at_broker.get(plan.tag)


def quote(ms: int, bid: float, ask: float) -> dict[str, Any]:
    return {"symbol": "SPY", "ts": T0 + ms * MS, "bid": bid, "ask": ask, "bid_size": 10, "ask_size": 10}


def _router(tmp_path: Path, g: Guard) -> tuple[Router, PaperBroker, Port, list[tuple[str, dict[str, Any]]]]:
    broker = PaperBroker(PaperSettings(latency_ms=50, lot_size=100))
    port = Port(broker)
    out: list[tuple[str, dict[str, Any]]] = []
    audit = AuditWriter(None, tmp_path / "spill.jsonl", "paper")
    router = Router(port, Accountant(FeeSchedule()), lambda t, r: out.append((t, r)), audit, lambda p: "[]", guard=g)
    return router, broker, port, out


def _tape(router: Router, broker: PaperBroker, quotes: list[dict[str, Any]]) -> None:
    for q in quotes:
        for update in broker.on_quote(q):
            router.on_update(update)
        router.on_clock(q["ts"], q["symbol"])


def _orders(out: list[tuple[str, dict[str, Any]]], order_id: str) -> list[dict[str, Any]]:
    return [r for t, r in out if t == "orders" and r["id"] == order_id]


def test_every_order_is_recorded_as_sending_before_the_broker_hears_of_it(tmp_path: Path) -> None:
    seen_at_send: list[list[str]] = []
    g = guard()
    router, _broker, port, out = _router(tmp_path, g)
    g.before_send = lambda: seen_at_send.append([r["status"] for r in _orders(out, "ord-sig1")])
    router.on_intent(intent(), T0)
    assert seen_at_send == [["sending"]]  # flushed before submit; the broker's reply comes after
    assert [r["status"] for r in _orders(out, "ord-sig1")] == ["sending", "pending"]
    assert port.submitted == ["sig1"]


def test_a_failed_sending_record_sends_nothing_and_halts(tmp_path: Path) -> None:
    g = guard()
    router, _, port, out = _router(tmp_path, g)

    def broken() -> None:
        raise FatalError("1 deliveries failed; first: orders: Local: Message timed out")

    g.before_send = broken
    router.on_intent(intent(), T0)
    assert port.submitted == []
    assert _orders(out, "ord-sig1")[-1]["status"] == "refused"
    assert g.state is TradingState.HALTED
    assert "delivery failed before sending ord-sig1" in str(g.change.reason)


def test_halt_refuses_entries_but_the_time_stop_exit_still_goes_out(tmp_path: Path) -> None:
    g = guard()
    router, broker, port, out = _router(tmp_path, g)
    router.on_intent(intent(time_stop_ts=T0 + 1000 * MS), T0)
    _tape(router, broker, [quote(0, 450.09, 450.10), quote(60, 450.09, 450.10)])  # entry filled
    router.on_control({"command": "halt", "reason": "test", "ts": T0 + 100 * MS}, T0 + 100 * MS)
    router.on_intent(intent("sig2", ts=T0 + 200 * MS), T0 + 200 * MS)
    refused = _orders(out, "ord-sig2")[-1]
    assert refused["status"] == "refused"
    assert refused["status_history"][-1]["reason"].startswith("trading_state: halted: test")
    _tape(router, broker, [quote(1000, 450.20, 450.21), quote(1100, 450.30, 450.31), quote(1200, 450.25, 450.26)])
    assert port.submitted == ["sig1", "sig1-x"]  # the exit went out under HALT, the new entry did not
    (ledger,) = [r for t, r in out if t == "trade_ledger"]
    assert ledger["exit_reason"] == "time"


def test_halt_cancels_unfilled_entries_and_flatten_closes_positions(tmp_path: Path) -> None:
    g = guard(max_open_positions=5)
    router, broker, _port, out = _router(tmp_path, g)
    router.on_intent(intent("fill"), T0)
    router.on_intent(intent("wait", entry_limit=449.95, take_profit=450.5, stop_loss=449.7), T0)
    _tape(router, broker, [quote(0, 450.09, 450.10), quote(60, 450.09, 450.10)])  # only "fill" fills
    router.on_control({"command": "halt", "ts": T0 + 100 * MS}, T0 + 100 * MS)
    _tape(router, broker, [quote(200, 450.09, 450.10)])
    assert _orders(out, "ord-wait")[-1]["status"] == "canceled"
    assert _orders(out, "ord-fill")[-1]["status"] != "canceled"  # a filled position keeps its bracket
    router.on_control({"command": "flatten", "reason": "eod drill", "ts": T0 + 300 * MS}, T0 + 300 * MS)
    _tape(router, broker, [quote(400, 450.00, 450.01), quote(500, 450.00, 450.01), quote(600, 450.0, 450.01)])
    (ledger,) = [r for t, r in out if t == "trade_ledger"]
    assert (ledger["signal_id"], ledger["exit_reason"]) == ("fill", "flatten")
    assert router.open_trades() == []
    assert g.state is TradingState.HALTED


def test_the_end_of_day_flatten_closes_what_is_open_at_the_cutoff(tmp_path: Path) -> None:
    g = guard()
    router, broker, _port, out = _router(tmp_path, g)
    late = CLOSE - 10 * 60 * NS
    router.on_intent(intent(ts=late), late)
    cutoff = (CLOSE - 5 * 60 * NS - T0) // MS
    _tape(router, broker, [quote((late - T0) // MS + 60, 450.09, 450.10)])
    _tape(router, broker, [quote(cutoff + i * 100, 450.2, 450.21) for i in range(4)])
    (ledger,) = [r for t, r in out if t == "trade_ledger"]
    assert ledger["exit_reason"] == "eod"


def test_a_restarted_router_finds_the_exit_it_was_sending_and_never_sends_another(tmp_path: Path) -> None:
    """Published: the bracket filled then canceled by the time stop, its exit recorded as sending and never
    acknowledged (the router died in between). The broker has the exit: it is bound, not sent again."""
    g = guard()
    router, broker, _port, out = _router(tmp_path, g)
    router.on_intent(intent(time_stop_ts=T0 + 1000 * MS), T0)
    _tape(router, broker, [quote(0, 450.09, 450.10), quote(60, 450.09, 450.10), quote(1000, 450.2, 450.21)])
    _tape(router, broker, [quote(1100, 450.3, 450.31)])  # cancel confirmed, exit sent
    latest: dict[str, dict[str, Any]] = {}
    for t, r in out:
        if t == "orders":
            latest[r["id"]] = r
    assert latest["ord-sig1-x"]["status"] == "pending"
    dead = dict(latest, **{"ord-sig1-x": {**_orders(out, "ord-sig1-x")[0], "broker_order_id": None}})
    assert dead["ord-sig1-x"]["status"] == "sending"
    fills = [r for t, r in out if t == "fills"]
    for found in (True, False):
        again, _, port2, _out2 = _router(tmp_path, guard())
        if found:
            port2.at_broker["sig1-x"] = "B-77"
        again.restore(dead, fills, set())
        again.on_intent(intent(time_stop_ts=T0 + 1000 * MS), T0 + 1200 * MS)
        again.on_clock(T0 + 1300 * MS)
        if found:
            assert port2.submitted == []  # neither the bracket nor a second exit
            assert again.trades["oi-sig1"].exit is not None
            assert again.trades["oi-sig1"].exit.broker_order_id == "B-77"
        else:  # not at the broker: it never left, so it is sent now, once
            assert port2.submitted == ["sig1-x"]


def test_the_end_of_day_cutoff_comes_from_the_exchange_calendar_half_days_included() -> None:
    from connectors.execution.common import make_guard
    from execution.settings import ExecutionSettings
    from streams.core.sessions import Calendar

    g = make_guard(ExecutionSettings(), Calendar(), None)
    ordinary = 1_795_100_000_000_000_000  # 2026-11-19 (Thursday)
    half_day = 1_795_800_000_000_000_000  # 2026-11-27 (the day after Thanksgiving: closes 13:00 ET)
    thanksgiving = 1_795_700_000_000_000_000  # 2026-11-26: closed
    assert _et(g.eod_cutoff(ordinary)) == "2026-11-19 15:55"
    assert _et(g.eod_cutoff(half_day)) == "2026-11-27 12:55"
    assert g.eod_cutoff(thanksgiving) is None


def _et(ts: int | None) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    assert ts is not None
    return dt.datetime.fromtimestamp(ts / NS, ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M")
