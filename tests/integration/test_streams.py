"""`scalp streams` (the Faust worker) against the real Kafka and registry, compared with the core alone."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kafkaio.admin import TopicAdmin
from kafkaio.reader import read_topic
from scalp.settings import AppSettings, load_settings
from schemas.catalog import catalog
from tests.cli_util import scalp
from tests.sink_util import producer_for
from tests.streams_util import (
    core_outputs,
    loose_policy,
    produce,
    raw_messages,
    read_back,
    start_streams,
    tape,
    worker_config,
)

pytestmark = pytest.mark.timeout(600)


def _feature_key(r: dict[str, Any]) -> tuple[str, int]:
    return (r["symbol"], r["ts"])


def _signal_key(r: dict[str, Any]) -> str:
    return str(r["id"])


def _by(records: list[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    return sorted(records, key=key)


@pytest.fixture(scope="module")
def recorded() -> list[tuple[str, dict[str, Any]]]:
    return tape()


def _setup(
    services: AppSettings,
    prefix: str,
    tmp: Path,
    records: list[tuple[str, dict[str, Any]]],
    poison_at: int | None = None,
) -> Any:
    _, kafka, serde = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    produce(kafka, serde, records, poison_at)
    env = {**os.environ, "SCALP_TOPIC_PREFIX": prefix}
    env_hash = load_settings(worker_config(tmp), env=env).digest()  # the worker's settings
    return kafka, serde, env_hash


def _finish(proc: Any, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return str(out)


def test_live_worker_matches_the_core_alone(
    services: AppSettings, prefix: str, tmp_path: Path, recorded: list[tuple[str, dict[str, Any]]]
) -> None:
    kafka, serde, env_hash = _setup(services, prefix, tmp_path, recorded, poison_at=len(recorded) // 2)
    policy = loose_policy(tmp_path)
    expected = core_outputs(policy, recorded, env_hash)
    assert len(expected["features"]) > 5000
    setups = Counter(s["setup"] for s in expected["signals"])
    assert len(setups) >= 3, setups  # the tape exercises most setups
    assert Counter(s["status"] for s in expected["signals"])["promoted"] > 0

    out = _finish(start_streams(policy, prefix, "--until-idle", "4"))
    assert f"streams: {len(recorded) + 1} events in" in out, out[-6000:]  # the worker's warnings say why
    assert "1 dead letters" in out
    # the record that is not Avro went to the dead-letter topic with its bytes and the reason; the rest
    # of the tape was processed as if it had not been there
    (dead,) = raw_messages(kafka, kafka.topic(catalog()["market_quotes"].dlq))
    assert dead.value() == b"not avro at all"
    headers = dict(dead.headers() or [])
    assert b"magic byte" in headers["error"] or b"too short" in headers["error"]
    assert headers["source_topic"] == kafka.topic("market_quotes").encode()

    features = read_back(kafka, serde, "features", _feature_key)
    assert features == _by(expected["features"], _feature_key)
    signals = read_back(kafka, serde, "signals", _signal_key)
    assert signals == _by(expected["signals"], _signal_key)
    # one risk decision per signal, and intents only for approved ones
    decisions = {d["signal_id"]: d for d in read_topic(kafka, serde, "risk_decisions")}
    assert set(decisions) == {s["id"] for s in signals}
    intents = list(read_topic(kafka, serde, "order_intents"))
    assert {i["signal_id"] for i in intents} == {k for k, d in decisions.items() if d["decision"] == "approve"}
    assert all(d["veto_reasons"] == [] for d in decisions.values() if d["decision"] == "approve")


def _same(got: list[dict[str, Any]], expected: list[dict[str, Any]], key: Any) -> None:
    """``got`` equals ``expected`` (by key); else an error naming the first differing record and its fields."""
    mine, theirs = {key(r): r for r in got}, {key(r): r for r in expected}
    missing, extra = sorted(set(theirs) - set(mine)), sorted(set(mine) - set(theirs))
    assert not missing, f"{len(missing)} records missing, first {missing[:3]}"
    assert not extra, f"{len(extra)} records not expected, first {extra[:3]}"
    for k in sorted(theirs):
        diff = {f: (mine[k].get(f), v) for f, v in theirs[k].items() if mine[k].get(f) != v}
        assert not diff, f"{k}: (worker, core) {diff}; {sum(mine[j] != theirs[j] for j in theirs)} records differ"


def _strict_boundaries(records: list[tuple[str, dict[str, Any]]], start: int, parts: int) -> list[int]:
    """About ``parts`` split points after ``start``, each moved forward to where event time strictly increases:
    every record after a split is later than every record before it, so what the worker releases when it
    has read everything between two parts (the end of input, for all it knows) lands where the merge would
    have put it anyway."""
    step = max(1, (len(records) - start) // parts)
    cuts: list[int] = []
    for i in range(start + step, len(records), step):
        while i < len(records) and records[i][1]["ts"] == records[i - 1][1]["ts"]:
            i += 1
        if i < len(records) and (not cuts or i > cuts[-1]):
            cuts.append(i)
    return cuts


@pytest.mark.parametrize("how", ["restart", "rebalance"])
def test_worker_killed_mid_session_resumes_with_the_same_state(
    services: AppSettings, prefix: str, tmp_path: Path, recorded: list[tuple[str, dict[str, Any]]], how: str
) -> None:
    """restart: the killed worker is started again. rebalance: a second worker joined the group before the
    first was killed, and takes its partitions (and their state, from the changelog) over. Either way Faust
    can hand out records of an old fetch position first; the worker must not apply them over the offsets it
    skipped (it reads those directly and takes them first) or the re-emitted records differ.

    A third of the tape is in Kafka before the first worker starts; the rest arrives in parts over about
    8 s while the workers run (the worker reads the whole tape in a few seconds: a tape published at once
    would be done before the kill)."""
    import threading

    first_part = _strict_boundaries(recorded, 0, 3)[0]  # about a third
    kafka, serde, env_hash = _setup(services, prefix, tmp_path, recorded[:first_part])
    policy = loose_policy(tmp_path)
    expected = core_outputs(policy, recorded, env_hash)
    total = len(expected["features"])
    cuts = [*_strict_boundaries(recorded, first_part, 16), len(recorded)]
    feed_error: list[BaseException] = []

    def feed() -> None:
        try:
            previous = first_part
            for cut in cuts:
                time.sleep(0.5)
                produce(kafka, serde, recorded[previous:cut])
                previous = cut
        except BaseException as exc:  # reported by the test thread
            feed_error.append(exc)

    proc = start_streams(policy, prefix)
    deadline = time.monotonic() + 240
    seen = 0
    while time.monotonic() < deadline and seen < total // 5:  # the first part is being read
        time.sleep(1)
        seen = sum(1 for _ in read_topic(kafka, serde, "features", timeout_s=10))
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else "")[-3000:]
    assert seen >= total // 5, f"only {seen} of {total} features before the deadline"
    feeder = threading.Thread(target=feed, name="tape-feed", daemon=True)
    feeder.start()
    second = start_streams(policy, prefix, "--until-idle", "6") if how == "rebalance" else None
    # rebalance: the second worker joins the group while the first is busy; restart: a few parts in
    time.sleep(6 if second is not None else 3)
    os.kill(proc.pid, signal.SIGKILL)
    killed_out, _ = proc.communicate(timeout=30)
    seen = sum(1 for _ in read_topic(kafka, serde, "features", timeout_s=10))
    assert seen < total, "the worker was not killed mid-session"
    feeder.join(60)
    assert not feeder.is_alive()
    assert not feed_error, feed_error

    out = _finish(second or start_streams(policy, prefix, "--until-idle", "4"))
    (tmp_path / "killed.log").write_text(killed_out)  # kept for a failure's diagnosis
    (tmp_path / "resumed.log").write_text(out)
    assert "state restored" in out  # read back from the changelog, not rebuilt from scratch
    notes = "\n".join(  # what the workers warned about, for a failure's diagnosis in CI's output
        line[:300] for line in (killed_out + out).splitlines() if '"WARNING"' in line or '"ERROR"' in line
    )[-6000:]
    try:
        features = read_back(kafka, serde, "features", _feature_key)  # asserts re-emitted records are equal
        _same(features, expected["features"], _feature_key)
        signals = read_back(kafka, serde, "signals", _signal_key)
        _same(signals, expected["signals"], _signal_key)
    except AssertionError as exc:
        raise AssertionError(f"{str(exc)[:3000]}\nlogs in {tmp_path}; warnings:\n{notes}") from None


def test_invalid_policy_is_a_usage_error(services: AppSettings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrisk:\n  max_trades_per_day: 0\n")
    proc = scalp("streams", "--policy", str(bad))
    assert proc.returncode == 2
    assert "risk.max_trades_per_day" in proc.stderr
    assert "greater than or equal to 1" in proc.stderr


def test_an_order_the_broker_rejected_gives_its_risk_slot_back(
    services: AppSettings, prefix: str, tmp_path: Path, recorded: list[tuple[str, dict[str, Any]]]
) -> None:
    """The live worker reads `orders`: a rejected entry no longer counts as a trade taken or an open
    position (before, its slot came back only at its time stop)."""
    from schemas.examples import example_record

    kafka, serde, _ = _setup(services, prefix, tmp_path, recorded)
    policy = loose_policy(tmp_path)
    _finish(start_streams(policy, prefix, "--until-idle", "4"))
    decisions = list(read_topic(kafka, serde, "risk_decisions"))
    intents = list(read_topic(kafka, serde, "order_intents"))
    last_decision = max(d["ts"] for d in decisions)
    still_open = [i for i in intents if (i["time_stop_ts"] or 0) > last_decision]  # not expired by a later signal
    assert still_open, "the tape should end with an open position"
    intent = max(still_open, key=lambda i: i["ts"])
    before = list(read_topic(kafka, serde, "risk_day"))[-1]  # the risk module's state after the tape
    assert before["trades_taken"] > 0

    order = example_record(catalog(), "orders")
    order.update(
        id=f"ord-{intent['id']}", intent_id=intent["id"], ts=intent["ts"] + 1_000_000_000, symbol=intent["symbol"],
        status="rejected", status_history=[{"ts": intent["ts"] + 1_000_000_000, "status": "rejected", "reason": "x"}],
    )  # fmt: skip
    producer, _, _ = producer_for(services, prefix)
    producer.produce("orders", order)
    producer.flush(30)
    out = _finish(start_streams(policy, prefix, "--until-idle", "4"))
    assert "'risk_day': 1" in out, out[-2000:]  # one risk input: the refused order
    days = list(read_topic(kafka, serde, "risk_day"))
    after = days[-1]  # the one record the refused order produced (the topic has one partition)
    assert after["ts"] == order["ts"]
    assert after["trades_taken"] == before["trades_taken"] - 1
    assert after["open_positions"] == before["open_positions"] - 1


def test_risk_inputs_past_a_hole_are_read_directly_and_applied_in_order(
    services: AppSettings, prefix: str, tmp_path: Path
) -> None:
    """Faust can hand out a record past offsets it never delivered (an old fetch position); on the risk
    input that would skip inputs for good (Faust acknowledges risk inputs itself). Here the group's
    committed offset is moved past two inputs, as such a fetch position would: the worker must read them
    directly and apply all of them in order."""
    import datetime as dt

    import orjson
    from confluent_kafka import Consumer, Producer, TopicPartition

    kafka, serde, _ = _setup(services, prefix, tmp_path, [])
    policy = loose_policy(tmp_path)
    group = f"{prefix}scalp-streams"
    risk_topic = f"{group}-risk-input"
    ts = int(dt.datetime(2026, 11, 20, 15, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    producer = Producer(kafka.client_config())

    def ledger(intent: str, r: float, k: int) -> None:
        body = {"ledger": {"ts": ts + k * 1_000_000_000, "r_multiple": r, "intent_id": intent}}
        producer.produce(risk_topic, key=b"account", value=orjson.dumps(body), partition=0)
        producer.flush(30)

    _finish(start_streams(policy, prefix, "--until-idle", "4"))  # creates the risk input topic
    ledger("a", 1.0, 0)
    out = _finish(start_streams(policy, prefix, "--until-idle", "4"))
    assert "'risk_day': 1" in out, out[-2000:]
    mover = Consumer({**kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    _, first = mover.get_watermark_offsets(TopicPartition(risk_topic, 0), timeout=30)  # after the workers' markers
    for k, (intent, r) in enumerate([("b", -0.5), ("c", 0.25), ("d", 2.0)], start=1):
        ledger(intent, r, k)  # offsets first .. first + 2
    # the first two never handed out
    mover.commit(offsets=[TopicPartition(risk_topic, 0, first + 2)], asynchronous=False)
    mover.close()

    out = _finish(start_streams(policy, prefix, "--until-idle", "4"))
    assert "2 risk inputs read directly past a hole" in out, out[-3000:]
    assert "'risk_day': 3" in out, out[-2000:]
    days = list(read_topic(kafka, serde, "risk_day"))
    assert [d["r_realized"] for d in days] == [1.0, 0.5, 0.75, 2.75]  # every input, in offset order
    assert days[-1]["max_drawdown"] == 0.5


@pytest.mark.parametrize("form", ["pickled", "foreign class"])
def test_a_tampered_state_record_is_refused_without_running_anything(
    services: AppSettings, prefix: str, tmp_path: Path, recorded: list[tuple[str, dict[str, Any]]], form: str
) -> None:
    """Whoever can write the changelog must not run code in the worker: a pickle that would create a file
    when loaded, or a record naming a class outside the state schema, stops the worker (exit 1, naming the
    symbol) before anything is applied, and nothing is executed."""
    import pickle
    import zlib

    from confluent_kafka import Producer

    from streams.core import statecodec

    half = len(recorded) // 2
    kafka, serde, _ = _setup(services, prefix, tmp_path, recorded[:half])
    policy = loose_policy(tmp_path)
    _finish(start_streams(policy, prefix, "--until-idle", "3"))
    changelog = f"{prefix}scalp-streams-symbol-state-changelog"
    spy = [m for m in raw_messages(kafka, changelog) if m.key() == b"SPY"]
    assert spy, "the first run wrote SPY's state"
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    if form == "pickled":
        value = zlib.compress(pickle.dumps({"features": Exploit()}))
    else:
        tree = {"~c": "Popen", "~v": {"args": f"touch {marker}"}}
        value = statecodec.MAGIC + bytes([statecodec.VERSION]) + zlib.compress(__import__("orjson").dumps(tree))
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(changelog, value=value, key=b"SPY", partition=spy[-1].partition())
    producer.flush(10)

    def spy_features() -> int:
        return sum(1 for r in read_topic(kafka, serde, "features", timeout_s=10) if r["symbol"] == "SPY")

    spy_before = spy_features()
    produce(kafka, serde, recorded[half:])
    proc = start_streams(policy, prefix, "--until-idle", "3")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    assert "state of SPY refused" in out
    assert ("old pickled form" if form == "pickled" else "outside the state schema") in out
    assert not marker.exists()
    assert spy_features() == spy_before  # nothing of SPY was computed from the refused state
