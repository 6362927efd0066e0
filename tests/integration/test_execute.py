"""`scalp execute` against a local server that speaks Tradier's REST and account-stream protocols, and
with the paper broker on recorded quotes. Real Kafka, registry and PostgreSQL; the router runs as a
separate process, as users run it."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kafkaio.admin import TopicAdmin
from kafkaio.reader import read_topic
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.execution_util import (
    TradierServer,
    finish,
    make_intent,
    start_execute,
    tradier_server,
    wait_for,
)
from tests.sink_util import producer_for

NS = 1_000_000_000
MS = 1_000_000


def _produce(services: AppSettings, prefix: str, records: list[tuple[str, dict[str, Any]]]) -> Any:
    producer, kafka, serde = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    for topic, record in records:
        producer.produce(topic, record)
    producer.flush()
    return kafka, serde


def _topic(kafka: Any, serde: Any, topic: str) -> list[dict[str, Any]]:
    return list(read_topic(kafka, serde, topic, timeout_s=10))


def _last_orders(kafka: Any, serde: Any) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in sorted(_topic(kafka, serde, "orders"), key=lambda r: r["ts"]):
        latest[record["id"]] = record
    return latest


def _audit_kinds(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT kind, count(*) FROM execution_audit GROUP BY kind").fetchall()
    return {kind: n for kind, n in rows}


def _bracket_round_trip(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path, server: TradierServer, stream_fills: bool
) -> tuple[Any, Any, str]:
    now = time.time_ns()
    kafka, serde = _produce(services, prefix, [("order_intents", make_intent("sig-a1", now))])
    server.control("config", {"stream_fills": stream_fills})
    # through the stream: the /orders backstop polls only every 30 s, so a loaded machine cannot let it see
    # a fill before the stream delivers it; seen only by polling: every 0.5 s
    poll = {} if not stream_fills else {"poll_interval_s": 30.0}
    proc = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--until-idle", "3", **poll)
    order = wait_for("the bracket at the broker", lambda: server.order_with_tag("sig-a1"))
    assert order["class"] == "otoco"
    assert [(leg["side"], leg["type"]) for leg in order["leg"]] == [
        ("buy", "limit"),
        ("sell", "limit"),
        ("sell", "stop"),
    ]
    assert (order["leg"][0]["price"], order["leg"][1]["price"], order["leg"][2]["stop_price"]) == (
        450.10,
        450.50,
        449.90,
    )
    server.fill(order["id"], 0, 60, 450.10)  # the entry in two executions
    server.fill(order["id"], 0, 40, 450.12)
    server.fill(order["id"], 1, 100, 450.50)  # take-profit: the stop is canceled (OCO)
    return kafka, serde, finish(proc)


def test_bracket_lifecycle_through_the_account_stream(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    with tradier_server() as server:
        kafka, serde, out = _bracket_round_trip(services, prefix, fresh_db, tmp_path, server, stream_fills=True)
        assert server.state()["submissions"] == 1
    assert "1 sent" in out, out
    assert "1 trades closed" in out, out
    assert server.token not in out
    fills = sorted(_topic(kafka, serde, "fills"), key=lambda f: (f["leg_index"], f["ts"], f["qty"]))
    assert [(f["leg_index"], f["qty"], f["price"]) for f in fills] == [
        (0, 60, 450.10),
        (0, 40, 450.12),
        (1, 100, 450.50),
    ]
    assert {f["source"] for f in fills} == {"stream"}
    assert [f["slippage"] for f in fills] == [0.02, 0.04, 0.0]  # vs the reference 450.08, then vs the TP limit
    assert all(f["signal_id"] == "sig-a1" and f["latency_ms"] >= 0 for f in fills)
    assert [f["slippage_bps"] for f in fills] == [round(0.02 / 450.08 * 1e4, 3), round(0.04 / 450.08 * 1e4, 3), 0.0]
    # the latency chain: submitted, acknowledged, then filled (the test fills after the order is at the broker)
    assert all(0 <= f["submit_latency_ms"] <= f["ack_latency_ms"] <= f["latency_ms"] for f in fills)
    (ledger,) = _topic(kafka, serde, "trade_ledger")
    # entry avg (60 * 450.10 + 40 * 450.12) / 100 = 450.108; exit 450.50; PnL 0.392 * 100 = 39.20; R 39.2 / 20
    assert ledger["entry_price"] == 450.108
    assert ledger["realized_pnl"] == Decimal("39.200000")
    assert ledger["r_multiple"] == 1.96
    assert (ledger["exit_reason"], ledger["side"], ledger["qty"]) == ("tp", "long", 100)
    order = _last_orders(kafka, serde)["ord-sig-a1"]
    assert order["status"] == "filled"
    assert [leg["status"] for leg in order["legs"]] == ["filled", "filled", "canceled"]
    assert order["broker_order_id"]
    assert all(leg["broker_leg_id"] for leg in order["legs"])
    statuses = [h["status"] for h in order["status_history"]]
    assert statuses[:2] == ["sending", "pending"]  # recorded before it was sent, then acknowledged
    assert statuses[-1] == "filled"
    assert "tag" in order["payload"]
    assert server.token not in order["payload"]
    (snapshot, *_) = _topic(kafka, serde, "account_snapshot")
    assert snapshot["account_id"] == "VA0000001"
    assert snapshot["cash"] == Decimal("100000.000000")
    kinds = _audit_kinds(fresh_db)
    assert kinds["order_sent"] == 1
    assert kinds["broker_reply"] == 1
    assert kinds["state_change"] >= 1


def test_bracket_lifecycle_seen_only_by_polling(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    with tradier_server() as server:
        kafka, serde, out = _bracket_round_trip(services, prefix, fresh_db, tmp_path, server, stream_fills=False)
    assert "1 trades closed" in out, out
    fills = _topic(kafka, serde, "fills")
    assert {f["source"] for f in fills} == {"poll"}
    assert sorted(f["qty"] for f in fills) in ([40, 60, 100], [100, 100])  # a poll may see both entry fills at once
    assert sum(f["qty"] for f in fills if f["leg_index"] == 0) == 100
    (ledger,) = _topic(kafka, serde, "trade_ledger")
    assert ledger["realized_pnl"] == Decimal("39.200000")


def test_restart_mid_order_does_not_send_it_twice(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    now = time.time_ns()
    kafka, serde = _produce(services, prefix, [("order_intents", make_intent("sig-r1", now))])
    with tradier_server() as server:
        first = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", snapshot_interval_s=1)
        order = wait_for("the bracket at the broker", lambda: server.order_with_tag("sig-r1"))
        server.fill(order["id"], 0, 100, 450.10)
        wait_for("the entry fill published", lambda: _topic(kafka, serde, "fills"))
        # balances and positions are polled into account_snapshot: the long position shows up
        held = wait_for(
            "a snapshot with the position",
            lambda: [s for s in _topic(kafka, serde, "account_snapshot") if s["positions"]],
        )
        assert held[-1]["positions"] == [{"symbol": "SPY", "qty": 100, "cost_basis": Decimal("45010.000000")}]
        assert held[-1]["cash"] == Decimal("54990.000000")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        second = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--until-idle", "3")
        time.sleep(3)  # it reads back what was published and lists the broker's orders
        server.fill(order["id"], 2, 100, 449.88)  # stopped out (0.02 slippage)
        out = finish(second)
        state = server.state()
    assert state["submissions"] == 1
    assert state["tags"] == {"sig-r1": 1}
    assert "0 sent, 1 resumed" in out, out
    fills = _topic(kafka, serde, "fills")
    assert sorted((f["leg_index"], f["qty"], f["price"]) for f in fills) == [(0, 100, 450.10), (2, 100, 449.88)]
    (ledger,) = _topic(kafka, serde, "trade_ledger")
    assert ledger["realized_pnl"] == Decimal("-22.000000")
    assert ledger["r_multiple"] == -1.1
    assert ledger["exit_reason"] == "sl"


@pytest.mark.exclusive  # the time stop, 6 s of wall clock after the intent, must come after the fill
def test_an_exit_whose_submission_times_out_is_placed_once_and_the_position_ends_flat(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    """The time-stop exit is answered with a 500 after the broker created it: the lookup must find the exit
    itself (its own tag, class, side and symbol), not the cancelled bracket of the same signal."""
    now = time.time_ns()
    intent = make_intent("sig-t1", now, time_stop_ts=now + 6 * NS)
    kafka, serde = _produce(services, prefix, [("order_intents", intent)])
    with tradier_server() as server:
        proc = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--until-idle", "3")
        bracket = wait_for("the bracket at the broker", lambda: server.order_with_tag("sig-t1"))
        server.fill(bracket["id"], 0, 100, 450.10)
        server.control("config", {"ambiguous_next": 1})  # the next submission, the exit, times out
        exit_order = wait_for("the exit at the broker", lambda: server.order_with_tag("sig-t1-x"), timeout_s=30)
        assert (exit_order["class"], exit_order["side"], exit_order["type"]) == ("equity", "sell", "market")
        wait_for(
            "the exit bound to its own broker order",
            lambda: _last_orders(kafka, serde).get("ord-sig-t1-x", {}).get("broker_order_id") == str(exit_order["id"]),
            timeout_s=30,
        )
        server.fill(exit_order["id"], None, 100, 450.02)
        out = finish(proc)
        state = server.state()
    assert state["tags"] == {"sig-t1": 1, "sig-t1-x": 1}  # the exit placed exactly once
    assert state["positions"] == {"SPY": 0}, state["positions"]  # bought 100, sold 100: flat
    orders = _last_orders(kafka, serde)
    assert orders["ord-sig-t1"]["broker_order_id"] == str(bracket["id"])
    assert orders["ord-sig-t1-x"]["status"] == "filled"
    assert orders["ord-sig-t1-x"]["tag"] == "sig-t1-x"
    (ledger,) = _topic(kafka, serde, "trade_ledger")
    assert (ledger["exit_reason"], ledger["qty"]) == ("time", 100)
    assert "1 time stops" in out, out


def test_broker_errors_rejections_and_stream_faults(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    now = time.time_ns()
    kafka, serde = _produce(services, prefix, [])
    producer, _, _ = producer_for(services, prefix)

    def intent(record: dict[str, Any]) -> None:
        producer.produce("order_intents", record)
        producer.flush()

    with tradier_server(heartbeat_s=0.5) as server:
        proc = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier")
        # the broker accepts the order, then rejects it: the rejection and its reason are recorded
        server.control("config", {"reject_next": "Insufficient buying power"})
        intent(make_intent("sig-e1", now))
        wait_for("the rejection", lambda: _last_orders(kafka, serde).get("ord-sig-e1", {}).get("status") == "rejected")
        # 429s and a submission answered with a 500 after the order was created: sent once, adopted by tag
        server.control("config", {"rate_limit_next": 2, "ambiguous_next": 1})
        intent(make_intent("sig-e2", now + MS))
        order = wait_for("sig-e2 at the broker", lambda: server.order_with_tag("sig-e2"))
        wait_for("sig-e2 bound", lambda: _last_orders(kafka, serde).get("ord-sig-e2", {}).get("broker_order_id"))
        # an intent whose stop is above its entry never reaches the broker
        intent(make_intent("sig-e3", now + 2 * MS, stop_loss=450.20))
        wait_for("the refusal", lambda: "ord-sig-e3" in _last_orders(kafka, serde))
        # an event for an order nobody sent, duplicated events, a dropped stream
        server.control("event", {"event": "order", "id": 987654, "status": "filled", "exec_quantity": 5.0})
        server.control("config", {"duplicate_events": True})
        server.fill(order["id"], 0, 100, 450.10)
        server.control("drop_stream")
        server.fill(order["id"], 1, 100, 450.50)  # while the stream is down: the poll or the reconnect finds it
        wait_for("the trade closed", lambda: _topic(kafka, serde, "trade_ledger"), timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        out = finish(proc)
        state = server.state()
    assert state["tags"] == {"sig-e1": 1, "sig-e2": 1}  # nothing sent twice, sig-e3 never sent
    orders = _last_orders(kafka, serde)
    rejected = orders["ord-sig-e1"]
    assert rejected["status_history"][-1]["reason"] == "Insufficient buying power"
    refused = orders["ord-sig-e3"]
    assert refused["status"] == "refused"
    assert refused["broker_order_id"] is None
    assert "stop_loss < entry_limit < take_profit" in refused["status_history"][0]["reason"]
    fills = _topic(kafka, serde, "fills")
    assert sorted((f["leg_index"], f["qty"]) for f in fills) == [(0, 100), (1, 100)]  # each once
    assert "1 invalid" in out, out
    assert "1 unknown broker events" in out, out
    kinds = _audit_kinds(fresh_db)
    assert kinds["unknown_order"] == 1
    assert kinds["invalid_intent"] == 1


def test_preview_orders_are_validated_not_placed(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    kafka, serde = _produce(services, prefix, [("order_intents", make_intent("sig-p1", time.time_ns()))])
    with tradier_server() as server:
        out = finish(
            start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--preview", "--until-idle", "2")
        )
        state = server.state()
    assert state["submissions"] == 0
    assert state["requests"].get("POST /v1/accounts/VA0000001/orders") == 1
    (order,) = _topic(kafka, serde, "orders")
    assert (order["preview"], order["status"], order["broker_order_id"]) == (True, "previewed", None)
    assert "preview" in order["payload"], out


def test_missing_or_rejected_token_is_a_usage_error(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    env_less = start_execute(tmp_path, prefix, fresh_db, None, "--broker", "tradier")
    out, _ = env_less.communicate(timeout=60)
    assert env_less.returncode == 2, out
    assert "TRADIER_TOKEN is not set" in out, out
    with tradier_server() as server:
        wrong = "wrong-secret-token-123"
        proc = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", token=wrong)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "Tradier rejected the token" in out, out
    assert wrong not in out
    assert server.token not in out


def test_the_production_url_without_live_exits_2(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    production = {
        "TRADIER_TOKEN": "tok-production-secret",
        "TRADIER_ACCOUNT_ID": "VA0000001",
        "TRADIER_BASE_URL": "https://api.tradier.com/v1",
    }
    proc = start_execute(tmp_path, prefix, fresh_db, None, "--broker", "tradier", env_extra=production)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "TRADIER_BASE_URL is Tradier's production API" in out, out
    assert "needs --live" in out
    assert "tok-production-secret" not in out
    paper = start_execute(tmp_path, prefix, fresh_db, None, "--broker", "paper", "--live")
    out, _ = paper.communicate(timeout=60)
    assert paper.returncode == 2, out
    assert "--live is for --broker tradier" in out, out


# --- paper -----------------------------------------------------------------------------------------

T0 = 1_795_185_600_000_000_000  # 2026-11-20 14:40 UTC (09:40 ET)


def _quote(ms: int, bid: float, ask: float, size: int) -> dict[str, Any]:
    return {
        "symbol": "SPY",
        "ts": T0 + ms * MS,
        "bid": bid,
        "ask": ask,
        "bid_size": size,
        "ask_size": size,
        "bid_exchange": 11,
        "ask_exchange": 12,
        "conditions": [],
        "tape": 1,
        "seq": ms,
        "ts_ingest": T0 + ms * MS,
        "source": "ws",
    }


PAPER = ("--broker", "paper", "--until-idle", "2")
BIG = {"max_order_notional_usd": 500_000}  # the long below is 300 x 450.10


def test_paper_broker_run_is_deterministic_and_resumable(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    quotes = [
        _quote(0, 450.09, 450.10, 1),
        _quote(60, 450.09, 450.10, 2),  # long entry: 200 of 300 at the ask
        _quote(200, 450.07, 450.08, 5),  # the remaining 100
        _quote(900, 450.50, 450.51, 1),  # take-profit: 100
        _quote(1500, 449.85, 449.86, 10),  # stop: 200 at the bid
        *(_quote(2000 + 1000 * i, 449.78, 449.79, 10) for i in range(70)),  # short's TP; a minute: a snapshot
    ]
    long = make_intent("sig-q1", T0, qty=300)
    short = make_intent(
        "sig-q2", T0 + 1400 * MS, side="sell_short", qty=100, entry_limit=449.85, take_profit=449.80, stop_loss=450.0,
        risk_per_share=0.15, reference_price=449.86,
    )  # fmt: skip
    kafka, serde = _produce(
        services, prefix, [*(("market_quotes", q) for q in quotes), ("order_intents", long), ("order_intents", short)]
    )
    first = finish(start_execute(tmp_path, prefix, fresh_db, None, *PAPER, paper={"latency_ms": 50}, limits=BIG))
    assert "2 intents, 2 sent" in first, first
    assert "2 trades closed" in first, first
    fills = sorted((f["signal_id"], f["leg_index"], f["qty"], f["price"]) for f in _topic(kafka, serde, "fills"))
    assert fills == [
        ("sig-q1", 0, 100, 450.08),
        ("sig-q1", 0, 200, 450.10),
        ("sig-q1", 1, 100, 450.50),
        ("sig-q1", 2, 200, 449.85),
        ("sig-q2", 0, 100, 449.85),  # sold at the bid once live (1450 ms): the 1500 ms quote
        ("sig-q2", 1, 100, 449.80),  # its take-profit at its limit when the ask reaches it (2000 ms)
    ]
    ledgers = {r["signal_id"]: r for r in _topic(kafka, serde, "trade_ledger")}
    assert ledgers["sig-q1"]["realized_pnl"] == Decimal("-8.000000")
    assert ledgers["sig-q2"]["realized_pnl"] == Decimal("5.000000")  # (449.85 - 449.80) * 100
    snapshots = _topic(kafka, serde, "account_snapshot")
    assert snapshots
    assert all(s["account_id"] == "PAPER" for s in snapshots)
    assert snapshots[-1]["realized_pnl"] == Decimal("-3.000000")
    assert snapshots[-1]["positions"] == []
    counts = {t: len(_topic(kafka, serde, t)) for t in ("orders", "fills", "trade_ledger", "account_snapshot")}
    # a second run computes the same records and publishes none of them again
    second = finish(start_execute(tmp_path, prefix, fresh_db, None, *PAPER, paper={"latency_ms": 50}, limits=BIG))
    assert f"{sum(counts.values())} already published" in second, (counts, second)
    assert counts == {t: len(_topic(kafka, serde, t)) for t in counts}


def test_audit_helper_never_blocks_the_caller_and_loses_nothing(fresh_db: str, tmp_path: Path) -> None:
    import json
    import threading

    from sinks.audit import AuditWriter
    from sinks.migrate import migrate

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
    gate = threading.Event()

    def slow_database() -> psycopg.Connection:
        gate.wait(60)  # the writer thread is stuck here until the test opens the gate
        return psycopg.connect(fresh_db)

    spill = tmp_path / "spill.jsonl"
    audit = AuditWriter(slow_database, spill, "tradier", max_queue=10, batch=5)
    for i in range(50):
        audit.record("order_sent", f"ord-{i}", i, n=i)
    assert not gate.is_set()  # every record() returned while the database was not answering
    assert audit.spilled >= 50 - 10 - 5  # at most the queue and the batch the thread holds wait
    gate.set()
    audit.close()
    with psycopg.connect(fresh_db) as conn:
        written = {row[0] for row in conn.execute("SELECT order_id FROM execution_audit")}
    spilled = {json.loads(line)["order_id"] for line in spill.read_text().splitlines()}
    assert written | spilled == {f"ord-{i}" for i in range(50)}
    assert not written & spilled
    assert (audit.written, audit.spilled) == (len(written), len(spilled))

    down = AuditWriter(lambda: psycopg.connect("postgresql://scalp@127.0.0.1:1/x", connect_timeout=1), spill, "paper")
    for i in range(3):
        down.record("state_change", f"down-{i}", i)
    down.close()
    assert (down.written, down.spilled) == (0, 3)
    reasons = [json.loads(line)["spilled"] for line in spill.read_text().splitlines()[-3:]]
    assert reasons == ["database unavailable"] * 3


def _form(cls: str, tag: str | None, *legs: tuple[str, ...]) -> list[tuple[str, str]]:
    """An indexed-leg form; a leg is (symbol, side, quantity, type, "price=.." or "stop=..")."""
    form = [("class", cls), ("duration", "day")] + ([("tag", tag)] if tag else [])
    for i, (symbol, side, qty, kind, *level) in enumerate(legs):
        form += [(f"symbol[{i}]", symbol), (f"side[{i}]", side), (f"quantity[{i}]", qty), (f"type[{i}]", kind)]
        form += [(f"{name}[{i}]", value) for name, value in (x.split("=") for x in level)]
    return form


def test_tradier_client_speaks_the_rest_protocol() -> None:
    """The REST client alone: OCO and single orders, lists of one and none, modify, cancel, positions."""
    import pytest
    from pydantic import SecretStr

    from connectors.tradier.parsing import items
    from connectors.tradier.rest import TradierClient, TradierRejected
    from connectors.tradier.settings import TradierSettings

    with tradier_server() as server:
        settings = TradierSettings(token=SecretStr(server.token), account_id="VA0000001", base_url=server.base_url)
        client = TradierClient(settings)
        assert client.orders() == []  # {"orders": "null"}
        oco = client.submit(
            _form(
                "oco", "t-oco", ("QQQ", "sell", "5", "limit", "price=530.00"), ("QQQ", "sell", "5", "stop", "stop=520")
            )
        )
        (listed,) = client.orders()  # a bare object for one order
        assert (listed["id"], listed["class"], len(items(listed, "leg"))) == (oco["id"], "oco", 2)
        single = client.submit(
            [("class", "equity"), ("duration", "day"), ("symbol", "SPY"), ("side", "buy"), ("quantity", "10"),
             ("type", "limit"), ("price", "400.00"), ("tag", "t-single")]
        )  # fmt: skip
        client.modify(str(single["id"]), price="401.00")
        assert client.order(str(single["id"]))["price"] == 401.0
        client.cancel(str(single["id"]))
        assert client.order(str(single["id"]))["status"] == "canceled"
        with pytest.raises(TradierRejected, match="not in a cancelable state"):
            client.cancel(str(single["id"]))
        market_entry = _form(
            "otoco",
            None,
            ("SPY", "buy", "1", "market"),
            ("SPY", "sell", "1", "limit", "price=2"),
            ("SPY", "sell", "1", "stop", "stop=0.5"),
        )
        with pytest.raises(TradierRejected, match="first leg must be limit"):  # as Tradier documents
            client.submit(market_entry)
        assert len(client.orders()) == 2
        assert client.positions() == {"positions": "null"}
        assert client.balances()["balances"]["total_cash"] == 100000.0
        assert client.available is not None  # the rate-limit headers were read
