"""Tuning: the dataset re-evaluation equals a real re-run of the strategy, the split and the decisions."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from backtest import tune as t
from backtest.export import point_in_time
from backtest.replay import replay
from backtest.sources import RANK
from connectors.synthetic.records import session_records
from execution.settings import PaperSettings
from execution.tracker import FeeSchedule
from streams.core.digests import Digests
from streams.core.labels import label_all
from streams.core.pipeline import CoreParts
from streams.core.policy import POLICY_FILE, SessionPolicy, load_policy, parse_policy

DAYS = ("2026-11-19", "2026-11-20", "2026-11-23")  # a warm-up day, then two tradable mornings


@pytest.fixture(scope="module")
def tape() -> list[tuple[str, dict[str, Any]]]:
    records: list[tuple[str, dict[str, Any]]] = []
    for day in DAYS:
        records += session_records(dt.date.fromisoformat(day), ["SPY", "QQQ"], 7, "09:30", "10:15")
    return sorted(records, key=lambda item: (item[1]["ts"], RANK[item[0]]))


def run_policy(tape: list[tuple[str, dict[str, Any]]], policy: SessionPolicy) -> dict[str, list[dict[str, Any]]]:
    parts = CoreParts.create(policy, Digests("test", policy.digest, "test"))
    return replay(tape, parts, PaperSettings(), FeeSchedule(), feedback_loop=False).outputs


@pytest.fixture(scope="module")
def dataset(tape: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    policy = load_policy()
    out = run_policy(tape, policy)
    labels = label_all(out["signals"], (r for topic, r in tape if topic == "market_quotes"), policy.risk, None)
    rows, _ = point_in_time(out["signals"], out["features"], labels)
    return rows


def with_changes(policy: SessionPolicy, changes: dict[str, dict[str, float]]) -> SessionPolicy:
    data = policy.model_dump(mode="json")
    for setup, params in changes.items():
        node = data["setups"].setdefault(setup, {})
        for key, value in params.items():
            if key == "promote_score":
                node[key] = value
            else:
                node.setdefault("filters", {})[key] = value
    return parse_policy(data)


def test_the_current_policy_reproduces_every_recorded_status(dataset: list[dict[str, Any]]) -> None:
    data = t.load_dataset(dataset)
    statuses = {r["status"] for r in dataset}
    assert {"promoted", "blocked"} <= statuses  # a tape where filters and scores matter
    t.check_current(data, load_policy())  # raises when any status differs
    assert data.days == DAYS[1:]
    assert data.idle_days == DAYS[:1]


def test_other_values_give_what_a_real_rerun_of_the_strategy_gives(
    tape: list[tuple[str, dict[str, Any]]], dataset: list[dict[str, Any]]
) -> None:
    base = load_policy()
    changes = {
        "vwap_reclaim": {"promote_score": 0.7, "min_rvol": 0.2, "imbalance_min": -0.2},
        "ema20_pullback": {"promote_score": 0.3, "max_spread_bps": 1.0},
        "sigma_reversion": {"min_rvol": 1.2, "imbalance_min": 0.1},
        "hod_lod_breakout": {"min_rvol": 0.3, "promote_score": 0.45},
    }
    other = with_changes(base, changes)
    rerun = run_policy(tape, other)["signals"]
    data = t.load_dataset(dataset)
    key = lambda r: (r["symbol"], r["setup"], r["side"], r["ts"])  # noqa: E731 - ids carry the policy digest
    assert sorted(map(key, rerun)) == sorted(map(key, dataset))  # the same candidates exist
    promoted_by_rerun = {key(r) for r in rerun if r["status"] == "promoted"}
    flips = 0
    for setup, c in data.setups.items():
        rows = [r for r in dataset if r["setup"] == setup]
        predicted = c.passes(t.current_params(other, setup))
        assert [key(r) in promoted_by_rerun for r in rows] == list(predicted), setup
        flips += sum(int(p) != (r["status"] == "promoted") for p, r in zip(predicted, rows, strict=True))
    assert flips > 0  # the changes did change statuses, so the equality above says something


def rows_for(day: str, scores_r: list[tuple[float, float]], setup: str = "ema20_pullback") -> list[dict[str, Any]]:
    """Hand-built dataset rows of one day: (score, label R) each; filters pass at the live values."""
    base = int(dt.datetime.fromisoformat(f"{day}T15:00:00+00:00").timestamp() * 1e9)
    return [
        {
            "setup": setup, "side": "long", "ts": base + i * 10**9, "score": score, "filters_blocked": "",
            "status": "promoted" if score >= 0.5 else "generated", "f_rvol": 2.0, "f_bid": 100.0, "f_ask": 100.01,
            "f_ob_imbalance": 0.1, "label_r": r,
        }
        for i, (score, r) in enumerate(scores_r)
    ]  # fmt: skip


def test_a_higher_bar_is_proposed_when_validation_confirms_it() -> None:
    weak_lose = [(0.52, -1.0)] * 6 + [(0.7, 1.5)] * 6
    rows = rows_for("2026-11-17", weak_lose) + rows_for("2026-11-18", weak_lose) + rows_for("2026-11-19", weak_lose)
    results, train, valid = t.tune(t.load_dataset(rows), load_policy(), t.Search(min_trades=5))
    (r,) = results
    assert (train, valid) == (["2026-11-17", "2026-11-18"], ["2026-11-19"])
    assert r.proposed
    assert 0.52 < r.best["promote_score"] <= 0.7
    assert (r.validation_before.trades, r.validation_before.total_r) == (12, 3.0)
    assert (r.validation_after.trades, r.validation_after.total_r, r.validation_after.win_rate) == (6, 9.0, 1.0)


def test_a_train_only_edge_is_kept_out() -> None:
    train = [(0.52, -1.0)] * 6 + [(0.7, 1.5)] * 6
    valid = [(0.52, 1.5)] * 6 + [(0.7, -1.0)] * 6  # the edge reverses on the later day
    rows = rows_for("2026-11-17", train) + rows_for("2026-11-18", valid)
    (r,) = t.tune(t.load_dataset(rows), load_policy(), t.Search(min_trades=5))[0]
    assert r.decision == "kept: not better on the validation days"
    assert r.changes() == {}
    assert r.best["promote_score"] > 0.52  # what training alone would have picked


def test_too_few_days_and_bad_inputs_are_clear() -> None:
    one_day = t.load_dataset(rows_for("2026-11-17", [(0.6, 1.0)] * 10))
    with pytest.raises(t.TuneError, match="at least 2 days"):
        t.tune(one_day, load_policy(), t.Search())
    wrong = {**rows_for("2026-11-17", [(0.4, 1.0)])[0], "status": "promoted"}  # 0.4 < 0.5 is never promoted
    with pytest.raises(t.TuneError, match="different status"):
        t.check_current(t.load_dataset([wrong]), load_policy())
    with pytest.raises(t.TuneError, match="unknown parameter"):
        t.read_space({"arm_bps": [1, 2]}, "space.yaml")
    with pytest.raises(t.TuneError, match="outside"):
        t.read_space({"promote_score": [2.0]}, "space.yaml")


def test_random_search_is_reproducible_and_starts_with_the_current_values() -> None:
    now = t.current_params(load_policy(), "vwap_reclaim")
    a = t.candidates(t.Search(kind="random", samples=50, seed=3), now)
    b = t.candidates(t.Search(kind="random", samples=50, seed=3), now)
    c = t.candidates(t.Search(kind="random", samples=50, seed=4), now)
    assert a == b != c
    assert a[0] == now
    assert len(a) == 51


def test_cli_writes_a_valid_proposal_and_never_touches_the_live_policy(tmp_path: Path) -> None:
    rows = []
    for day in ("2026-11-17", "2026-11-18", "2026-11-19"):
        rows += rows_for(day, [(0.52, -1.0)] * 6 + [(0.7, 1.5)] * 6)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dataset.parquet")
    live_before = hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest()
    proposed = tmp_path / "proposed.yaml"
    cmd = [sys.executable, "-m", "scalp.cli", "tune", "--dataset", str(tmp_path / "dataset.parquet")]
    proc = subprocess.run([*cmd, "--proposed", str(proposed)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ema20_pullback: proposed (promote_score 0.5->" in proc.stdout
    assert hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest() == live_before
    text = proposed.read_text()
    assert text.startswith("# PROPOSED by `scalp tune`")
    assert "# 1R in dollars" in text  # the live file's comments are kept
    new = parse_policy(yaml.safe_load(text))
    assert 0.5 < new.setup("ema20_pullback").promote_score <= 0.7
    assert new.setup("vwap_reclaim") == load_policy().setup("vwap_reclaim")  # only the tuned setup moved
    report = (tmp_path / "tune_report.md").read_text()
    assert "| validation best on train | 6 |" in report
    assert "-    promote_score: 0.5" in report
    refused = subprocess.run([*cmd, "--proposed", str(POLICY_FILE)], capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "live policy file" in refused.stderr
    assert hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest() == live_before
