"""Order plans, accounting (fills, ledger PnL and R by hand), the paper broker on a scripted tape."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.tradier.parsing import account_snapshot, items, order_form, order_update, stream_event, to_ns
from execution.model import InvalidIntent, LegUpdate, OrderUpdate, plan_bracket
from execution.paper import PaperBroker, PaperPort
from execution.router import Router
from execution.settings import PaperSettings
from execution.tracker import Accountant, FeeSchedule, Tracked, Trade
from sinks.audit import AuditWriter
from tests.execution_util import make_intent

T0 = 1_795_185_600_000_000_000  # 2026-11-20 14:40 UTC (09:40 ET)
MS = 1_000_000


def intent(**over: Any) -> dict[str, Any]:
    over = {"time_stop_ts": T0 + 15 * 60 * 1_000_000_000, **over}
    return make_intent(over.pop("signal_id", "sig1"), T0, **over)


def leg(
    index: int, qty: int, avg: float, ts: int, last_qty: int = 0, last_price: float = 0.0, status: str = ""
) -> LegUpdate:
    return LegUpdate(index, f"b{index}", status or ("filled" if qty else "open"), qty, avg, ts, last_qty, last_price)


def records(out: list[tuple[str, Any]], topic: str) -> list[dict[str, Any]]:
    return [r for t, r in out if t == topic]


# --- plans -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"stop_loss": 450.20}, "a long needs stop_loss < entry_limit < take_profit"),
        ({"side": "sell_short", "take_profit": 449.7, "stop_loss": 450.0}, "a short needs take_profit < entry_limit"),
        ({"entry_type": "market"}, "an OTOCO entry must be a limit order"),
        ({"qty": 0}, "qty must be a positive integer"),
        ({"entry_limit": None}, "entry_limit must be a positive price"),
        ({"signal_id": "sig 1/x"}, "not a valid broker tag"),
        ({"side": "sell"}, "is not an entry side for equity"),
        ({"instrument": "option", "side": "buy_to_open"}, "an option intent needs option_symbol"),
    ],
)
def test_an_intent_that_cannot_be_a_bracket_is_refused_with_the_reason(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidIntent, match=reason):
        plan_bracket(intent(**over))


def test_brackets_become_tradier_forms_with_indexed_legs() -> None:
    long = order_form(plan_bracket(intent()), preview=False)
    assert long == [
        ("class", "otoco"), ("duration", "day"), ("tag", "sig1"),
        ("symbol[0]", "SPY"), ("side[0]", "buy"), ("quantity[0]", "100"), ("type[0]", "limit"), ("price[0]", "450.10"),
        ("symbol[1]", "SPY"), ("side[1]", "sell"), ("quantity[1]", "100"), ("type[1]", "limit"), ("price[1]", "450.50"),
        ("symbol[2]", "SPY"), ("side[2]", "sell"), ("quantity[2]", "100"), ("type[2]", "stop"), ("stop[2]", "449.90"),
    ]  # fmt: skip
    short = dict(order_form(plan_bracket(intent(side="sell_short", take_profit=449.7, stop_loss=450.3)), preview=True))
    assert (short["side[0]"], short["side[1]"], short["side[2]"], short["preview"]) == (
        "sell_short",
        "buy_to_cover",
        "buy_to_cover",
        "true",
    )
    option = dict(
        order_form(
            plan_bracket(intent(instrument="option", option_symbol="SPY261120C00450000", side="buy_to_open")), False
        )
    )
    assert option["option_symbol[0]"] == "SPY261120C00450000"
    assert (option["side[0]"], option["side[2]"]) == ("buy_to_open", "sell_to_close")


# --- accounting ------------------------------------------------------------------------------------


def _trade(fees: FeeSchedule, **over: Any) -> tuple[Accountant, Trade]:
    plan = plan_bracket(intent(**over))
    return Accountant(fees), Trade(Tracked(plan, "tradier", "[]"))


def _update(trade: Trade, status: str, ts: int, *legs: LegUpdate) -> OrderUpdate:
    return OrderUpdate(trade.bracket.plan.order_id, "B1", status, ts, "stream", legs)


def test_long_trade_pnl_and_r_by_hand() -> None:
    """Entry 100 @ 450.10 (ref 450.08: slippage +0.02), take-profit 100 @ 450.50, $0.005/share.
    Gross 0.40 * 100 = 40.00; fees 200 * 0.005 = 1.00; PnL 39.00; 1R = 0.20 * 100 = 20.00 -> R 1.95."""
    acc, trade = _trade(FeeSchedule(per_share_usd=0.005))
    out = acc.apply(trade, _update(trade, "open", T0 + 10 * MS, leg(0, 100, 450.10, T0 + 10 * MS, 100, 450.10)))
    (entry,) = records(out, "fills")
    assert (entry["qty"], entry["price"], entry["slippage"], entry["latency_ms"]) == (100, 450.10, 0.02, 10.0)
    assert entry["slippage_bps"] == round(0.02 / 450.08 * 1e4, 3)  # 0.444 bps
    assert records(out, "orders")[0]["status"] == "open"
    # the same cumulative state again (poll after stream): nothing new
    assert (
        records(acc.apply(trade, _update(trade, "open", T0 + 11 * MS, leg(0, 100, 450.10, T0 + 10 * MS))), "fills")
        == []
    )
    out = acc.apply(
        trade,
        _update(
            trade,
            "filled",
            T0 + 90_000 * MS,
            leg(0, 100, 450.10, T0 + 10 * MS),
            leg(1, 100, 450.50, T0 + 90_000 * MS, 100, 450.50),
            leg(2, 0, 0.0, T0 + 90_000 * MS, status="canceled"),
        ),
    )
    (tp,) = records(out, "fills")
    assert (tp["side"], tp["reference_price"], tp["slippage"]) == ("sell", 450.50, 0.0)
    (ledger,) = records(out, "trade_ledger")
    assert ledger["side"] == "long"
    assert (ledger["entry_price"], ledger["exit_price"], ledger["qty"]) == (450.10, 450.50, 100)
    assert ledger["fees"] == Decimal("1.000000")
    assert ledger["realized_pnl"] == Decimal("39.000000")
    assert ledger["r_multiple"] == 1.95
    assert ledger["exit_reason"] == "tp"
    assert (ledger["ts_open"], ledger["ts"]) == (T0 + 10 * MS, T0 + 90_000 * MS)
    snapshot = records(out, "orders")[-1]
    assert [x["status"] for x in snapshot["legs"]] == ["filled", "filled", "canceled"]
    assert [h["status"] for h in snapshot["status_history"]] == ["open", "filled"]


def test_short_trade_stopped_out_with_slippage_pnl_and_r_by_hand() -> None:
    """Short 50 @ 380.00 in two executions (30 @ 380.01, 20 @ 379.985 seen as one update: avg 380.00),
    stop 380.25 filled at 380.27 (slippage 0.02), $1 per order.
    Gross (380.00 - 380.27) * 50 = -13.50; fees 2 legs * 1.00 = 2.00; PnL -15.50; 1R 0.25 * 50 -> R -1.24."""
    acc, trade = _trade(
        FeeSchedule(per_order_usd=1.0),
        side="sell_short",
        qty=50,
        entry_limit=380.0,
        take_profit=379.5,
        stop_loss=380.25,
        risk_per_share=0.25,
        reference_price=None,
    )
    out = acc.apply(trade, _update(trade, "open", T0, leg(0, 30, 380.01, T0, 30, 380.01, "partially_filled")))
    assert records(out, "fills")[0]["price"] == 380.01
    out = acc.apply(trade, _update(trade, "open", T0 + MS, leg(0, 50, 380.0, T0 + MS, 20, 379.985)))
    second = records(out, "fills")[0]
    assert (second["qty"], second["price"], second["id"]) == (20, 379.985, "ord-sig1-0-50")
    assert second["slippage"] == 0.015  # sold below the entry limit (the reference when the signal gave none)
    out = acc.apply(trade, _update(trade, "filled", T0 + 5 * MS, leg(2, 50, 380.27, T0 + 5 * MS, 50, 380.27)))
    (stop_fill,) = records(out, "fills")
    assert (stop_fill["side"], stop_fill["reference_price"], stop_fill["slippage"]) == ("buy_to_cover", 380.25, 0.02)
    (ledger,) = records(out, "trade_ledger")
    assert (ledger["side"], ledger["entry_price"], ledger["exit_price"]) == ("short", 380.0, 380.27)
    assert ledger["fees"] == Decimal("2.000000")
    assert ledger["realized_pnl"] == Decimal("-15.500000")
    assert ledger["r_multiple"] == -1.24
    assert ledger["exit_reason"] == "sl"


def test_order_snapshots_of_one_order_have_increasing_times() -> None:
    acc, trade = _trade(FeeSchedule())
    first = records(acc.status(trade, trade.bracket, "pending", T0, None), "orders")[0]
    second = records(acc.apply(trade, _update(trade, "open", T0)), "orders")[0]  # the broker's time is equal
    assert second["ts"] > first["ts"]


# --- paper broker ----------------------------------------------------------------------------------


def quote(ms: int, bid: float, ask: float, bid_size: int = 1, ask_size: int = 1) -> dict[str, Any]:
    return {"symbol": "SPY", "ts": T0 + ms * MS, "bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}


def _paper(tmp_path: Path, settings: PaperSettings) -> tuple[Router, PaperBroker, list[tuple[str, dict[str, Any]]]]:
    broker = PaperBroker(settings)
    out: list[tuple[str, dict[str, Any]]] = []
    audit = AuditWriter(None, tmp_path / "spill.jsonl", "paper")
    router = Router(
        PaperPort(broker), Accountant(FeeSchedule()), lambda t, r: out.append((t, r)), audit, lambda p: "[]"
    )
    return router, broker, out


def _run_tape(
    tmp_path: Path, tape: list[dict[str, Any]], the_intent: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    router, broker, out = _paper(tmp_path, PaperSettings(latency_ms=50, lot_size=100))
    router.on_intent(the_intent, the_intent["ts"])
    for q in tape:
        for update in broker.on_quote(q):
            router.on_update(update)
        router.on_clock(q["ts"], q["symbol"])
    router.audit.close()
    return out


TAPE = [
    quote(0, 450.09, 450.10, 1, 1),  # before the order is live (50 ms latency)
    quote(60, 450.09, 450.10, 2, 2),  # entry: 200 of 300 at the ask (2 lots shown)
    quote(100, 450.11, 450.12, 3, 3),  # ask above the limit: nothing
    quote(200, 450.07, 450.08, 5, 5),  # the remaining 100 at 450.08
    quote(900, 450.50, 450.51, 1, 4),  # take-profit: 100 at its limit (1 lot at the bid)
    quote(1500, 449.85, 449.86, 10, 10),  # stop triggered: the other 200 at the bid, 449.85
    quote(1600, 449.00, 449.01, 10, 10),  # nothing left
]


def test_paper_broker_fills_a_bracket_against_a_scripted_tape(tmp_path: Path) -> None:
    out = _run_tape(tmp_path, TAPE, intent(qty=300))
    fills = [(f["leg_index"], f["qty"], f["price"], f["ts"] - T0) for f in records(out, "fills")]
    assert fills == [
        (0, 200, 450.10, 60 * MS),
        (0, 100, 450.08, 200 * MS),
        (1, 100, 450.50, 900 * MS),
        (2, 200, 449.85, 1500 * MS),
    ]
    # the latency chain in event time: signal -> submitted at once -> live (acknowledged) 50 ms later -> fill
    first_fill = records(out, "fills")[0]
    assert (first_fill["submit_latency_ms"], first_fill["ack_latency_ms"], first_fill["latency_ms"]) == (
        0.0,
        50.0,
        60.0,
    )
    (ledger,) = records(out, "trade_ledger")
    # entry 90,020 + 45,008 = 135,028; exits 45,050 + 89,970 = 135,020; PnL -8.00; 1R = 0.20 * 300 = 60
    assert ledger["realized_pnl"] == Decimal("-8.000000")
    assert ledger["entry_price"] == round(135_028 / 300, 6)
    assert ledger["exit_price"] == round(135_020 / 300, 6)
    assert ledger["r_multiple"] == round(-8 / 60, 6)
    assert ledger["exit_reason"] == "sl"
    last = records(out, "orders")[-1]
    assert last["status"] == "filled"
    assert [x["status"] for x in last["legs"]] == ["filled", "canceled", "filled"]  # OCO: the TP's rest canceled
    # deterministic: the same tape gives the same records
    assert _run_tape(tmp_path, TAPE, intent(qty=300)) == out


def test_paper_time_stop_cancels_the_bracket_then_closes_at_the_touch(tmp_path: Path) -> None:
    stop_at = T0 + 1000 * MS
    tape = [
        quote(0, 450.09, 450.10, 5, 5),
        quote(60, 450.09, 450.10, 5, 5),  # entry fills 100 @ 450.10
        quote(1000, 450.20, 450.21, 5, 5),  # time stop due: cancel sent (effective at 1050)
        quote(1040, 450.49, 450.50, 5, 5),  # neither TP (450.50 needs the bid) nor stop
        quote(1100, 450.30, 450.31, 5, 5),  # cancel confirmed: market exit sent (live at 1150)
        quote(1200, 450.25, 450.26, 5, 5),  # exit fills at the bid
    ]
    out = _run_tape(tmp_path, tape, intent(time_stop_ts=stop_at))
    fills = [(f["order_id"], f["leg_index"], f["qty"], f["price"]) for f in records(out, "fills")]
    assert fills == [("ord-sig1", 0, 100, 450.10), ("ord-sig1-x", 3, 100, 450.25)]
    (ledger,) = records(out, "trade_ledger")
    assert (ledger["exit_reason"], ledger["realized_pnl"]) == ("time", Decimal("15.000000"))
    assert ledger["order_ids"] == ["ord-sig1", "ord-sig1-x"]
    exit_order = [o for o in records(out, "orders") if o["id"] == "ord-sig1-x"][-1]
    assert (exit_order["order_class"], exit_order["order_type"], exit_order["side"]) == ("equity", "market", "sell")


def test_time_stops_reach_every_open_trade_and_never_a_closed_one_again(tmp_path: Path) -> None:
    # the router looks only at trades not yet closed on each quote: a trade that closed leaves that set, and
    # the next one's stop still fires, once
    router, broker, out = _paper(tmp_path, PaperSettings(latency_ms=50, lot_size=100))
    first, second = intent(time_stop_ts=T0 + 1000 * MS), intent(signal_id="sig2", time_stop_ts=T0 + 3000 * MS)
    router.on_intent(first, T0)
    router.on_intent(second, T0)
    tape = [quote(0, 450.09, 450.10, 5, 5), quote(60, 450.09, 450.10, 5, 5)]  # both entries fill at 60 ms
    tape += [quote(ms, 450.20, 450.21, 5, 5) for ms in range(1000, 5000, 100)]
    open_after_first: list[str] = []
    for q in tape:
        for update in broker.on_quote(q):
            router.on_update(update)
        router.on_clock(q["ts"], q["symbol"])
        if q["ts"] == T0 + 2000 * MS:
            open_after_first = [t.intent["signal_id"] for t in router.open_trades()]
    router.audit.close()
    assert open_after_first == ["sig2"]  # the first closed at its time stop; the second is open
    ledgers = records(out, "trade_ledger")
    assert [(r["signal_id"], r["exit_reason"]) for r in ledgers] == [("sig1", "time"), ("sig2", "time")]
    exits = [f["order_id"] for f in records(out, "fills") if f["leg_index"] == 3]
    assert exits == ["ord-sig1-x", "ord-sig2-x"]  # one exit each: the closed trade was not stopped again
    assert router.stats.time_stops == 2
    assert router.open_trades() == []


def test_paper_account_snapshot_marks_positions_to_the_mid(tmp_path: Path) -> None:
    router, broker, _ = _paper(tmp_path, PaperSettings(latency_ms=0, lot_size=100, start_cash_usd=100_000))
    router.on_intent(intent(qty=100), T0)
    for update in broker.on_quote(quote(10, 450.09, 450.10, 5, 5)):
        router.on_update(update)
    broker.on_quote(quote(20, 450.29, 450.31, 5, 5))
    snap = broker.snapshot(T0 + 30 * MS, "rth")
    assert snap["cash"] == Decimal("54990.000000")  # 100,000 - 100 * 450.10
    assert snap["positions"] == [{"symbol": "SPY", "qty": 100, "cost_basis": Decimal("45010.000000")}]
    assert snap["unrealized_pnl"] == Decimal("20.000000")  # (450.30 - 450.10) * 100
    assert snap["equity"] == Decimal("100020.000000")
    router.audit.close()


# --- Tradier JSON ----------------------------------------------------------------------------------


def test_tradier_lists_are_null_an_object_or_a_list() -> None:
    assert items("null", "order") == []
    assert items({"order": {"id": 1}}, "order") == [{"id": 1}]
    assert items({"order": [{"id": 1}, {"id": 2}]}, "order") == [{"id": 1}, {"id": 2}]
    assert to_ns("2026-11-20T14:40:00.123Z") == T0 + 123 * MS


def test_tradier_order_and_event_parsing() -> None:
    plan = plan_bracket(intent())
    obj = {
        "id": 1001,
        "status": "partially_filled",
        "class": "otoco",
        "transaction_date": "2026-11-20T14:40:01.000Z",
        "leg": [
            {"id": 1002, "status": "filled", "exec_quantity": 100.0, "avg_fill_price": 450.1,
             "last_fill_quantity": 100.0, "last_fill_price": 450.1, "transaction_date": "2026-11-20T14:40:00.500Z"},
            {"id": 1003, "status": "open", "exec_quantity": 0.0, "avg_fill_price": 0.0},
            {"id": 1004, "status": "open", "exec_quantity": 0.0, "avg_fill_price": 0.0},
        ],
    }  # fmt: skip
    update = order_update(obj, plan, "poll", 0)
    assert (update.broker_order_id, update.status, update.ts) == ("1001", "partially_filled", T0 + 1000 * MS)
    assert [(x.index, x.broker_id, x.exec_qty, x.ts) for x in update.legs] == [
        (0, "1002", 100, T0 + 500 * MS),
        (1, "1003", 0, T0 + 1000 * MS),
        (2, "1004", 0, T0 + 1000 * MS),
    ]
    event = stream_event({"event": "order", "id": 1003, "parent_id": 1001, "status": "filled", "exec_quantity": 100.0})
    assert (event.broker_id, event.parent_id, event.exec_qty, event.ts) == ("1003", "1001", 100, None)
    with pytest.raises(KeyError):
        stream_event({"event": "order", "status": "filled"})
    snap = account_snapshot(
        "ACC1",
        {"balances": {"total_cash": 1000.5, "total_equity": 2000, "open_pl": -3.25, "close_pl": 10,
                      "margin": {"stock_buying_power": 4000}}},
        {"positions": {"position": {"symbol": "SPY", "quantity": -10.0, "cost_basis": -4501.0}}},
        T0,
        "rth",
    )  # fmt: skip
    assert (snap["cash"], snap["equity"], snap["unrealized_pnl"], snap["buying_power"]) == (
        Decimal("1000.500000"),
        Decimal("2000.000000"),
        Decimal("-3.250000"),
        Decimal("4000.000000"),
    )
    assert snap["positions"] == [{"symbol": "SPY", "qty": -10, "cost_basis": Decimal("-4501.000000")}]


def test_an_exit_has_its_own_tag_and_a_lookup_matches_tag_class_side_and_symbol() -> None:
    from connectors.tradier.parsing import is_plan
    from execution.model import plan_exit

    bracket = plan_bracket(intent(signal_id="sig-9"))
    exit_plan = plan_exit(bracket, 100)
    assert bracket.tag == "sig-9"
    assert exit_plan.tag == "sig-9-x"
    listed_bracket = {"id": 1, "tag": "sig-9", "class": "otoco", "symbol": "SPY", "side": "buy",
                      "leg": [{"symbol": "SPY", "side": "buy"}, {"symbol": "SPY", "side": "sell"}]}  # fmt: skip
    listed_exit = {"id": 2, "tag": "sig-9-x", "class": "equity", "symbol": "SPY", "side": "sell"}
    assert is_plan(listed_bracket, bracket)
    assert not is_plan(listed_bracket, exit_plan)  # the cancelled bracket is never taken for the exit
    assert is_plan(listed_exit, exit_plan)
    assert not is_plan(listed_exit, bracket)
    assert not is_plan({**listed_exit, "side": "buy"}, exit_plan)  # same tag, other side
    assert not is_plan({**listed_exit, "symbol": "QQQ"}, exit_plan)
    assert not is_plan({**listed_exit, "class": "option"}, exit_plan)
    assert not is_plan(listed_exit | {"tag": "sig-9"}, exit_plan)


def test_a_signal_id_too_long_for_the_exit_tag_is_refused() -> None:
    with pytest.raises(InvalidIntent, match="at most 253"):
        plan_bracket(intent(signal_id="s" * 254))
