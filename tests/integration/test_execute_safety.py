"""The faults that lose money, against the real router process and the Tradier-protocol server: a router
killed between sending an exit and recording it, limits that refuse before anything reaches the broker,
the kill switch (halt, flatten) through the control topic, and one router per account."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kafkaio.admin import TopicAdmin
from kafkaio.reader import RangeReader, read_topic
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.execution_util import ACCOUNT, execute_config, finish, make_intent, start_execute, tradier_server, wait_for
from tests.sink_util import producer_for

NS = 1_000_000_000


def _producer(services: AppSettings, prefix: str) -> tuple[Any, Any, Any]:
    producer, kafka, serde = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    return producer, kafka, serde


def _send(producer: Any, topic: str, *records: dict[str, Any]) -> None:
    for record in records:
        producer.produce(topic, record)
    producer.flush()


def _orders(kafka: Any, serde: Any) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in sorted(read_topic(kafka, serde, "orders", timeout_s=10), key=lambda r: r["ts"]):
        latest[record["id"]] = record
    return latest


def _history(kafka: Any, serde: Any, order_id: str) -> list[str]:
    snaps = sorted(
        (r for r in read_topic(kafka, serde, "orders", timeout_s=10) if r["id"] == order_id), key=lambda r: r["ts"]
    )
    return [r["status"] for r in snaps]


def _healthz(port: int) -> dict[str, Any] | None:
    import requests

    try:
        reply = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except requests.RequestException:
        return None
    return reply.json() if reply.status_code == 200 else None


def scalp(tmp: Path, prefix: str, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCALP_TOPIC_PREFIX": prefix, "DATABASE_URL": dsn, "SCALP_LOG_DIR": str(tmp / "logs")}
    env["TRADIER_ACCOUNT_ID"] = ACCOUNT
    cmd = [sys.executable, "-m", "scalp.cli", "--config", str(execute_config(tmp)), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.exclusive  # the time stop, 8 s of wall clock after the intent, must come after the fill
def test_a_router_killed_between_sending_an_exit_and_recording_it_sends_no_second_exit(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    """The exit's submission reaches the broker and the router dies before the reply: the restarted router
    finds the exit (recorded as sending) at the broker, sends nothing, and the position ends flat."""
    producer, kafka, serde = _producer(services, prefix)
    now = time.time_ns()
    _send(producer, "order_intents", make_intent("sig-k1", now, time_stop_ts=now + 8 * NS))
    with tradier_server() as server:
        first = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier")
        bracket = wait_for("the bracket at the broker", lambda: server.order_with_tag("sig-k1"))
        server.fill(bracket["id"], 0, 100, 450.10)
        server.control("config", {"hang_next_s": 60})  # the exit is created, its reply never comes in time
        exit_order = wait_for("the exit at the broker", lambda: server.order_with_tag("sig-k1-x"), timeout_s=30)
        assert _history(kafka, serde, "ord-sig-k1-x") == ["sending"]  # recorded before it went out, nothing since
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        second = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--until-idle", "3")
        wait_for(
            "the exit bound after the restart",
            lambda: _orders(kafka, serde).get("ord-sig-k1-x", {}).get("broker_order_id") == str(exit_order["id"]),
        )
        server.fill(exit_order["id"], None, 100, 450.05)
        out = finish(second)
        state = server.state()
    assert state["tags"] == {"sig-k1": 1, "sig-k1-x": 1}, state["tags"]  # no second exit
    assert state["positions"] == {"SPY": 0}  # flat, not reversed
    (ledger,) = list(read_topic(kafka, serde, "trade_ledger", timeout_s=10))
    assert (ledger["exit_reason"], ledger["qty"]) == ("time", 100)
    assert "0 sent" in out, out


def test_an_oversize_and_a_stale_intent_are_refused_and_nothing_reaches_the_broker(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    producer, kafka, serde = _producer(services, prefix)
    now = time.time_ns()
    _send(
        producer,
        "order_intents",
        make_intent("sig-big", now, qty=5000),  # a tight stop's size: 2.25M USD of SPY
        make_intent("sig-old", now - 600 * NS, time_stop_ts=now + 3600 * NS),  # ten minutes late
        make_intent("sig-odd", now, symbol="TSLA"),
        make_intent("sig-zero", now, qty=0),
    )
    with tradier_server() as server:
        out = finish(
            start_execute(
                tmp_path,
                prefix,
                fresh_db,
                server,
                "--broker",
                "tradier",
                "--until-idle",
                "2",
                limits={"max_intent_age_s": 60},
            )
        )
        state = server.state()
    assert state["submissions"] == 0
    assert state["requests"].get("POST /v1/accounts/VA0000001/orders") is None  # not even tried
    orders = _orders(kafka, serde)
    reasons = {k: v["status_history"][-1]["reason"] for k, v in orders.items()}
    assert {v["status"] for v in orders.values()} == {"refused"}
    assert reasons["ord-sig-big"].startswith("max_order_qty: 5000 above the limit of 500")
    assert reasons["ord-sig-old"].startswith("max_intent_age_s: the intent is 6")
    assert reasons["ord-sig-odd"].startswith("allowed_symbols: TSLA")
    assert reasons["ord-sig-zero"] == "qty must be a positive integer, got 0"
    assert "3 refused" in out, out
    assert "1 invalid" in out, out


@pytest.mark.exclusive  # a one-second bound on the wall clock
def test_halt_stops_entries_within_a_second_while_exits_still_go_out(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    producer, kafka, serde = _producer(services, prefix)
    now = time.time_ns()
    _send(producer, "order_intents", make_intent("sig-h1", now, time_stop_ts=now + 12 * NS))
    with tradier_server() as server:
        proc = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier")
        bracket = wait_for("the bracket at the broker", lambda: server.order_with_tag("sig-h1"))
        server.fill(bracket["id"], 0, 100, 450.10)
        halted = scalp(tmp_path, prefix, fresh_db, "halt", "--account", ACCOUNT, "--reason", "fomc drill")
        assert halted.returncode == 0, halted.stdout + halted.stderr
        time.sleep(1.0)  # HALTED refuses every new entry within one second of the command
        _send(producer, "order_intents", make_intent("sig-h2", time.time_ns()))
        refused = wait_for("sig-h2 refused", lambda: _orders(kafka, serde).get("ord-sig-h2"))
        assert refused["status"] == "refused"
        assert refused["status_history"][-1]["reason"].startswith("trading_state: halted: fomc drill")
        # a control record with an unknown command: dead-lettered, the state unchanged
        _send(producer, "execution_control", {"id": "ctl-bad", "ts": time.time_ns(), "account_id": ACCOUNT,
                                              "command": "panic", "reason": None, "issued_by": "test"})  # fmt: skip
        dlq = kafka.topic("execution_control.dlq")
        with RangeReader(kafka, "test-dlq") as reader:
            wait_for("the dead letter", lambda: list(reader.read(dlq, reader.bounds(dlq))), timeout_s=30)
        # the time stop's exit still goes out under HALT
        exit_order = wait_for("the exit at the broker", lambda: server.order_with_tag("sig-h1-x"), timeout_s=40)
        server.fill(exit_order["id"], None, 100, 450.02)
        wait_for("the trade closed", lambda: list(read_topic(kafka, serde, "trade_ledger", timeout_s=10)))
        status = scalp(tmp_path, prefix, fresh_db, "execute", "--broker", "tradier", "--status")
        assert status.returncode == 0, status.stderr
        assert "trading state halted: fomc drill" in status.stdout, status.stdout
        assert "router: running (scalp-execute" in status.stdout, status.stdout
        proc.send_signal(signal.SIGTERM)
        out = finish(proc)
        state = server.state()
    assert state["tags"] == {"sig-h1": 1, "sig-h1-x": 1}  # no sig-h2
    assert "1 dead letters" in out, out
    assert "trading state halted: fomc drill" in out, out


def test_flatten_leaves_no_open_order_or_position_and_the_halt_survives_a_restart(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    producer, kafka, serde = _producer(services, prefix)
    now = time.time_ns()
    _send(
        producer,
        "order_intents",
        make_intent("sig-f1", now),
        make_intent("sig-f2", now + 1, symbol="QQQ", entry_limit=400.0, take_profit=400.4, stop_loss=399.8),
    )
    with tradier_server() as server:
        proc = start_execute(
            tmp_path, prefix, fresh_db, server, "--broker", "tradier", limits={"max_open_positions": 5}
        )
        f1 = wait_for("sig-f1 at the broker", lambda: server.order_with_tag("sig-f1"))
        wait_for("sig-f2 at the broker", lambda: server.order_with_tag("sig-f2"))
        server.fill(f1["id"], 0, 100, 450.10)  # sig-f1 long 100 SPY; sig-f2 never fills
        wait_for("the entry fill recorded", lambda: list(read_topic(kafka, serde, "fills", timeout_s=10)))
        flat = scalp(tmp_path, prefix, fresh_db, "flatten", "--account", ACCOUNT, "--reason", "desk closed")
        assert flat.returncode == 0, flat.stderr
        exit_order = wait_for("the flatten's market exit", lambda: server.order_with_tag("sig-f1-x"), timeout_s=30)
        assert (exit_order["type"], exit_order["side"], exit_order["quantity"]) == ("market", "sell", 100.0)
        server.fill(exit_order["id"], None, 100, 450.00)
        wait_for("the trade closed", lambda: list(read_topic(kafka, serde, "trade_ledger", timeout_s=10)), timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        finish(proc)
        state = server.state()
        assert state["positions"] == {"SPY": 0}
        assert all(o["status"] in ("filled", "canceled") for o in state["orders"]), state["orders"]
        # the state is on the control topic: a restarted router is still halted
        _send(producer, "order_intents", make_intent("sig-f3", time.time_ns()))
        out = finish(start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--until-idle", "2"))
        assert server.order_with_tag("sig-f3") is None
    (ledger,) = list(read_topic(kafka, serde, "trade_ledger", timeout_s=10))
    assert (ledger["signal_id"], ledger["exit_reason"]) == ("sig-f1", "flatten")
    assert "trading state halted: desk closed" in out, out
    assert _orders(kafka, serde)["ord-sig-f3"]["status"] == "refused"


def test_a_second_router_for_the_account_refuses_to_start_until_the_first_is_killed(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    _producer(services, prefix)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tradier_server() as server:
        first = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", http_port=port)
        wait_for("the first router running", lambda: server.state()["sockets"] >= 1)
        health = wait_for("its /healthz", lambda: (h := _healthz(port)) and "trading_state" in h and h)
        assert health["account"] == ACCOUNT
        assert health["trading_state"].startswith("active")
        second = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier")
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 2, out
        assert f"another router holds {prefix}tradier:{ACCOUNT}: scalp-execute" in out, out
        assert f"pid {first.pid}" in out, out
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        killed_at = time.monotonic()
        third = start_execute(tmp_path, prefix, fresh_db, server, "--broker", "tradier", "--until-idle", "2")
        out = finish(third)
        assert time.monotonic() - killed_at < 60
    assert "execute (tradier)" in out, out


def test_a_failed_delivery_halts_entries_in_the_loop(services: AppSettings, prefix: str, tmp_path: Path) -> None:
    """A producer whose records cannot reach Kafka (a broker that is not there, a short delivery timeout):
    the router's loop check halts entries and says why, instead of trading on until shutdown."""
    from connectors.execution.control import watch_deliveries
    from execution.guard import Guard, TradingState
    from execution.paper import PaperBroker, PaperPort
    from execution.router import Router
    from execution.settings import LimitSettings, PaperSettings
    from execution.tracker import Accountant, FeeSchedule
    from kafkaio.producer import AvroProducer
    from sinks.audit import AuditWriter

    _, kafka, serde = _producer(services, prefix)
    nowhere = kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:9"})
    producer = AvroProducer(nowhere, serde, {"message.timeout.ms": 1000})
    halts: list[Any] = []
    router = Router(
        PaperPort(PaperBroker(PaperSettings())), Accountant(FeeSchedule()), producer.produce,
        AuditWriter(None, tmp_path / "spill.jsonl", "paper"), lambda p: "[]", guard=Guard(LimitSettings()),
        on_state=halts.append,
    )  # fmt: skip
    now = time.time_ns()
    router.on_intent(make_intent("sig-d1", now), now)  # its orders records are queued, never delivered
    wait_for(
        "the delivery failure", lambda: watch_deliveries(producer, router, now) or router.guard.state.value == "halted"
    )  # type: ignore[union-attr]
    assert router.guard is not None
    assert router.guard.state is TradingState.HALTED
    assert "a record was not delivered to Kafka" in str(router.guard.change.reason)
    assert len(halts) == 1  # published once, however many failures follow
    router.on_intent(make_intent("sig-d2", now + 1), now + 1)
    assert router.trades["oi-sig-d2"].bracket.status == "refused"
    producer.close()  # else it reconnects to nowhere, and logs each time, until the worker exits


def test_the_router_never_migrates_and_refuses_an_unmigrated_database(
    services: AppSettings, prefix: str, fresh_db: str, tmp_path: Path
) -> None:
    proc = scalp(tmp_path, prefix, fresh_db, "execute", "--broker", "paper", "--until-idle", "1")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run `scalp db migrate`" in proc.stderr
    with psycopg.connect(fresh_db) as conn:  # nothing was created behind the owner's back
        assert conn.execute("SELECT to_regclass('execution_audit')").fetchone() == (None,)
