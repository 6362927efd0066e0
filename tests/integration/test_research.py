"""Replay, drift and labels on a live synthetic session: the streams worker and the paper router ran
live on a tape; the replay of the same topics must reproduce them, and a changed threshold must show."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from backtest.report import day_of
from kafkaio.admin import TopicAdmin
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.cli_util import scalp
from tests.execution_util import finish as finish_execute
from tests.execution_util import start_execute
from tests.sink_util import producer_for
from tests.streams_util import loose_policy, produce, start_streams, tape


@pytest.fixture(scope="module")
def live_session(services: AppSettings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tape through `scalp streams` and `scalp execute --broker paper`, as a live day would go."""
    from kafkaio.admin import TopicAdmin as Admin

    tmp = tmp_path_factory.mktemp("live")
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    records = tape()
    _, kafka, serde = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    produce(kafka, serde, records, None)
    policy = loose_policy(tmp)
    out = start_streams(policy, prefix, "--until-idle", "4").communicate(timeout=300)[0]
    assert "streams:" in out, out[-3000:]
    executed = finish_execute(
        start_execute(tmp, prefix, services.database.dsn, None, "--broker", "paper", "--until-idle", "3"), 300
    )
    yield prefix, policy, tmp, executed, records
    Admin(services.kafka, catalog()).delete_prefixed(prefix)


def _run(prefix: str, *args: str) -> str:
    proc = scalp(*args, env={"SCALP_TOPIC_PREFIX": prefix}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _kafka_replay(prefix: str, runs: Path, run_id: str, policy: Path) -> str:
    return _run(prefix, "replay", "--source", "kafka", "--run-id", run_id, "--policy", str(policy), "--no-feedback",
                "--out", str(runs))  # fmt: skip


def test_replay_is_deterministic_and_reproduces_the_live_session(live_session: Any) -> None:
    prefix, policy, tmp, executed, records = live_session
    assert "trades closed" in executed
    runs = tmp / "runs"
    common = ["--source", "kafka", "--policy", str(policy), "--no-feedback", "--out", str(runs)]
    first = _run(prefix, "replay", "--run-id", "a", *common)
    assert f"{len(records)} events" in first, first
    _run(prefix, "replay", "--run-id", "b", *common)
    meta_a = json.loads((runs / "a" / "run.json").read_text())
    meta_b = json.loads((runs / "b" / "run.json").read_text())
    assert meta_a["outputs"] == meta_b["outputs"]  # identical outputs (sha256 of every topic)
    assert meta_a["outputs"]["signals"]["rows"] > 0
    assert sum(last - first + 1 for p in meta_a["offsets"]["market_quotes"].values() for first, last in [p]) > 0
    # the same run id again is refused without --overwrite
    again = scalp("replay", "--run-id", "a", *common, env={"SCALP_TOPIC_PREFIX": prefix})
    assert again.returncode == 2
    assert "exists" in again.stderr
    report = _run(prefix, "drift", "--run", "a", "--out", str(runs))
    drift = json.loads((runs / "a" / "drift.json").read_text())
    for topic in ("features", "signals"):
        t = drift["topics"][topic]
        assert (t["differing"], t["missing"], t["extra"]) == (0, 0, 0), (topic, t, report)
        assert t["matched"] > 0
    decisions = drift["topics"]["risk_decisions"]
    assert (decisions["missing"], decisions["extra"]) == (0, 0), decisions


def test_a_changed_threshold_shows_up_as_drift_on_its_setup(live_session: Any) -> None:
    prefix, policy, tmp, _, _ = live_session
    runs = tmp / "runs"
    changed = tmp / "changed.yaml"
    data = yaml.safe_load(policy.read_text())
    data["setups"]["vwap_reclaim"]["enabled"] = False
    changed.write_text(yaml.safe_dump(data))
    _kafka_replay(prefix, runs, "changed", changed)
    proc = scalp("drift", "--run", "changed", "--out", str(runs), "--fail-on-drift", env={"SCALP_TOPIC_PREFIX": prefix})
    assert proc.returncode == 1, proc.stdout
    drift = json.loads((runs / "changed" / "drift.json").read_text())
    per_setup = drift["signals_per_setup"]
    assert per_setup["vwap_reclaim"].get("missing", 0) > 0
    assert per_setup["vwap_reclaim"].get("matched", 0) == 0
    # a policy change changes every signal id (they carry its digest), so the other setups show as
    # missing + extra rather than matched; features do not depend on the setups and still match
    assert drift["topics"]["features"]["differing"] == 0
    digests = drift["stamps"]["session_policy_digest"]
    assert digests["live"] != digests["replay"]  # the report names the policy change


def test_labels_and_export_for_a_run(live_session: Any, services: AppSettings) -> None:
    prefix, policy, tmp, _, _ = live_session
    runs = tmp / "runs"
    if not (runs / "a").exists():
        _kafka_replay(prefix, runs, "a", policy)
    out = _run(prefix, "labels", "--run", "a", "--policy", str(policy), "--out", str(runs))
    assert "signals labelled" in out
    import pyarrow.parquet as pq

    rows = pq.read_table(runs / "a" / "signal_labels.parquet").to_pylist()
    assert rows
    assert {r["outcome"] for r in rows} <= {"TP", "SL", "TIME"}
    assert all(r["exit_ts"] > r["ts"] or r["outcome"] == "TIME" for r in rows)
    out = _run(prefix, "export", "--run", "a", "--csv", "--out", str(runs))
    assert "no feature after its signal" in out
    dataset = pq.read_table(runs / "a" / "dataset.parquet").to_pylist()
    assert dataset
    assert all(r["feature_ts"] <= r["ts"] for r in dataset)  # no look-ahead
    assert sum(1 for r in dataset if r["label_outcome"]) == len(rows)
    sidecar = json.loads((runs / "a" / "dataset.meta.json").read_text())
    assert sidecar["rows"] == len(dataset)
    assert sidecar["session_policy_digest"]
    assert sidecar["offsets"]["market_quotes"]
    assert (runs / "a" / "dataset.csv").read_text().count("\n") == len(dataset) + 1
    with psycopg.connect(services.database.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM signal_labels WHERE run_id = 'a'").fetchone()
    assert stored is not None
    assert stored[0] >= len(rows)


def test_replay_from_a_runs_offsets_gives_the_same_outputs(live_session: Any, tmp_path: Path) -> None:
    prefix, policy, _, _, records = live_session
    common = ["--policy", str(policy), "--no-feedback", "--out", str(tmp_path)]
    # a window inside the tape: the offsets a run recorded are those of the records inside it
    ts = sorted(r["ts"] for _, r in records)
    inside = [
        f"{dt.datetime.fromtimestamp(t / 1e9, dt.UTC).isoformat()}" for t in (ts[len(ts) // 4], ts[-len(ts) // 4])
    ]
    _run(prefix, "replay", "--run-id", "window", "--source", "kafka", "--from", inside[0], "--to", inside[1], *common)
    again = _run(prefix, "replay", "--run-id", "again", "--offsets-from", "window", *common)
    window = json.loads((tmp_path / "window" / "run.json").read_text())
    replayed = json.loads((tmp_path / "again" / "run.json").read_text())
    assert 0 < window["inputs"] < len(records)
    assert replayed["inputs"] == window["inputs"], again
    assert replayed["outputs"] == window["outputs"]
    assert replayed["offsets"] == window["offsets"]
    # explicit offsets: 100 trades of one partition
    partition, (first, _) = sorted(window["offsets"]["market_trades"].items())[0]
    spec = f"market_trades:{partition}:{first}-{first + 99}"
    _run(prefix, "replay", "--run-id", "explicit", "--offsets", spec, *common)
    explicit = json.loads((tmp_path / "explicit" / "run.json").read_text())
    assert explicit["inputs"] == 100
    assert explicit["offsets"] == {"market_trades": {partition: [first, first + 99]}}
    for bad, says in (
        ("market_trades:0:5", "not topic:partition:first-last"),
        (f"market_trades:{partition}:0-999999999", "past the end"),
        ("signals:0:0-1", "market topics only"),
    ):
        proc = scalp("replay", "--run-id", "bad", "--offsets", bad, *common, env={"SCALP_TOPIC_PREFIX": prefix})
        assert proc.returncode == 2, (bad, proc.stdout, proc.stderr)
        assert says in proc.stderr, (bad, proc.stderr)
    missing = scalp("replay", "--offsets-from", "nope", *common, env={"SCALP_TOPIC_PREFIX": prefix})
    assert missing.returncode == 2
    assert "no run 'nope'" in missing.stderr


def test_replay_of_an_empty_range_is_not_an_error(live_session: Any, tmp_path: Path) -> None:
    prefix, policy, _, _, _ = live_session
    out = _run(
        prefix, "replay", "--from", "2020-01-02", "--to", "2020-01-03", "--out", str(tmp_path), "--policy", str(policy)
    )
    assert "no market data" in out


def test_backtest_writes_the_report_and_it_rebuilds_offline(live_session: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    prefix, policy, _, _, records = live_session
    runs = tmp_path / "runs"
    common = ["--source", "kafka", "--policy", str(policy), "--no-feedback", "--out", str(runs), "--run-id", "bt"]
    out = _run(prefix, "backtest", *common)
    assert f"replay: {len(records)} events" in out
    run = runs / "bt"
    report = run / "report"
    for png in ("equity_r", "r_distribution", "setup_expectancy", "drift", "latency", "slippage"):
        assert (report / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f'src="{png}.png"' in (report / "index.html").read_text()
    summary = json.loads((report / "summary.json").read_text())
    ledger = pq.read_table(run / "trade_ledger.parquet").to_pylist()
    assert summary["trades"]["trades"] == len(ledger) > 0
    assert abs(summary["trades"]["total_r"] - sum(t["r_multiple"] for t in ledger)) < 1e-9
    for topic in ("features", "signals"):  # compared with the live session: reproduced
        t = summary["drift"]["topics"][topic]
        assert (t["differing"], t["missing"], t["extra"]) == (0, 0, 0), (topic, t)
        assert t["matched"] > 0
    live_fills = pq.read_table(run / "live_fills.parquet").to_pylist()
    assert {f["name"]: f["n"] for f in summary["fills"]}["slippage, bps (positive = worse)"] == len(live_fills) > 0
    labels = pq.read_table(run / "signal_labels.parquet").to_pylist()
    dataset = pq.read_table(run / "dataset.parquet").to_pylist()
    assert len(labels) == len(dataset) == json.loads((run / "run.json").read_text())["outputs"]["signals"]["rows"]
    # every Parquet file of the run holds event times as timestamps (ns, UTC), whatever reads it
    import polars as pl

    for name, columns in {"dataset": ("ts", "feature_ts", "label_exit_ts"), "signal_labels": ("ts", "exit_ts"),
                          "live_fills": ("ts",), "trade_ledger": ("ts",), "features": ("ts",)}.items():  # fmt: skip
        schema = pl.read_parquet(run / f"{name}.parquet").schema
        assert {c: schema[c] for c in columns} == {c: pl.Datetime("ns", "UTC") for c in columns}, name
    # a chart per day and symbol, static and interactive; both render in headless Chromium without errors
    from tests.browser import open_page

    charts = summary["charts"]
    assert charts == sorted(f"{d}_{s}" for d in {day_of(r["ts"]) for _, r in records} for s in ("QQQ", "SPY"))
    assert sorted(p.stem for p in (report / "sessions").glob("*.png")) == charts
    interactive = open_page(report / "sessions.html", "section.chart svg.main-svg", tmp_path / "i.png", tmp_path)
    assert interactive.errors == []
    assert interactive.found >= len(charts)  # plotly drew every chart
    assert interactive.colours() > 50  # the screenshot is not blank
    index = open_page(report / "index.html", "img", tmp_path / "index.png", tmp_path)
    assert index.errors == []  # every image the page names is there
    assert index.found >= len(charts) + 3
    assert (report / "plotly.min.js").stat().st_size > 1_000_000  # the script is local: no CDN
    assert "https://" not in (report / "sessions.html").read_text().split("<section", 1)[0]
    page = (report / "index.html").read_bytes()
    pngs = {p.name: p.read_bytes() for p in report.glob("**/*.png")}
    rebuilt = scalp("report", "--run", "bt", "--out", str(runs), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (report / "index.html").read_bytes() == page  # from the run's files alone, identical
    assert {p.name: p.read_bytes() for p in report.glob("**/*.png")} == pngs
    again = scalp("backtest", *common, env={"SCALP_TOPIC_PREFIX": prefix})
    assert again.returncode == 2
    assert "--overwrite" in again.stderr
    empty = _run(prefix, "backtest", *common[:-1], "empty", "--from", "2020-01-02", "--to", "2020-01-03")
    assert "no market data" in empty
    assert "drift: no live decisions in the range" in empty
    assert (runs / "empty" / "report" / "index.html").exists()


def test_export_of_the_live_topics_is_point_in_time(live_session: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from streams.core.policy import load_policy
    from tests.streams_util import WINDOWS

    prefix, policy, _, _, _ = live_session
    first, last = WINDOWS[0][0], WINDOWS[-1][0] + dt.timedelta(days=1)
    args = ["--from", str(first), "--to", str(last), "--out", str(tmp_path), "--name", "live"]
    out = _run(prefix, "export", *args, "--policy", str(policy), "--csv")
    assert "no feature after its signal" in out
    dataset = pq.read_table(tmp_path / "live" / "dataset.parquet").to_pylist()
    assert dataset
    assert all(r["feature_ts"] <= r["ts"] for r in dataset)  # no look-ahead
    assert sum(1 for r in dataset if r["label_outcome"]) == len(
        pq.read_table(tmp_path / "live" / "signal_labels.parquet")
    )
    sidecar = json.loads((tmp_path / "live" / "dataset.meta.json").read_text())
    assert sidecar["session_policy_digest"] == load_policy(policy).digest  # what the live worker ran with
    assert sidecar["offsets"]["signals"]
    assert sidecar["rows"] == len(dataset) == sidecar["signals"] - sidecar["signals_without_features"]
    nothing = _run(prefix, "export", "--from", "2020-01-02", "--to", "2020-01-03", "--out", str(tmp_path))
    assert "nothing written" in nothing
    both = scalp("export", "--run", "a", "--from", "2020-01-02", env={"SCALP_TOPIC_PREFIX": prefix})
    assert both.returncode == 2


def test_every_digest_resolves_and_a_run_reruns_from_its_digests(
    live_session: Any, services: AppSettings, tmp_path: Path
) -> None:
    from scalp.settings import DEFAULT_CONFIG
    from streams.core.policy import load_policy
    from tests.sink_util import sink_config, start_sink

    prefix, policy, _, _, _ = live_session
    env = {"SCALP_TOPIC_PREFIX": prefix}
    runs = tmp_path / "runs"
    live = load_policy(policy)
    # the live worker published the policy it ran with: resolvable from the topic (the database unreachable)
    nowhere = {"DATABASE_URL": "postgresql://scalp@127.0.0.1:1/none"}
    shown = scalp("config", "show", live.digest[:12], "--out", str(runs), env={**env, **nowhere})
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(live.canonical())
    assert "from the config_snapshots topic" in shown.stderr
    # the sink keeps it in config_snapshots (first row per digest), and the table answers from then on
    sink = start_sink(sink_config(tmp_path), services.database.dsn, prefix, "--topics", "config_snapshots",
                      "--until-idle", "3")  # fmt: skip
    assert sink.wait(120) == 0, (sink.stdout.read() if sink.stdout else "")[-3000:]
    with psycopg.connect(services.database.dsn) as conn:
        kinds = dict(conn.execute("SELECT kind, body FROM config_snapshots WHERE digest = %s", (live.digest,)))
    assert kinds == {"policy": live.canonical()}
    assert "from the config_snapshots table" in scalp("config", "show", live.digest, env=env).stderr
    # a run with its own policy and settings (fees) re-runs from its digests with neither file at hand
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data.setdefault("execution", {})["fees"] = {"per_share_usd": 0.01, "per_order_usd": 1.0}
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(data))
    gone = tmp_path / "gone.yaml"
    gone.write_text(policy.read_text())
    common = ["--source", "kafka", "--no-feedback", "--out", str(runs)]
    first = scalp("--config", str(custom), "replay", "--run-id", "own", "--policy", str(gone), *common, env=env)
    assert first.returncode == 0, first.stderr
    gone.unlink()
    _run(prefix, "replay", "--run-id", "plain", "--policy", str(policy), *common)
    again = _run(prefix, "replay", "--run-id", "again", "--config-from", "own", "--offsets-from", "own", *common)
    own, plain_meta, again_meta = (json.loads((runs / r / "run.json").read_text()) for r in ("own", "plain", "again"))
    assert own["env_hash"] != plain_meta["env_hash"]
    assert own["outputs"]["trade_ledger"]["rows"] > 0
    assert own["outputs"]["trade_ledger"] != plain_meta["outputs"]["trade_ledger"]  # the fees show
    assert (again_meta["env_hash"], again_meta["session_policy_digest"]) == (own["env_hash"], live.digest)
    assert again_meta["outputs"] == own["outputs"], again
    settings = scalp("config", "show", own["env_hash"], "--out", str(runs), env=env)
    assert f"settings {own['env_hash']} (from the runs in {runs})" in settings.stderr
    assert json.loads(settings.stdout)["execution"]["fees"]["per_order_usd"] == 1.0
    for bad, code, says in (("xyz", 2, "not a digest"), ("0" * 16, 2, "no config snapshot")):
        proc = scalp("config", "show", bad, "--out", str(runs), env=env)
        assert (proc.returncode, says in proc.stderr) == (code, True), proc.stderr
    both = scalp("replay", "--config-from", "own", "--policy", str(policy), *common, env=env)
    assert both.returncode == 2
    assert "give one" in both.stderr


def test_the_notebook_example_in_the_docs_runs_as_written(live_session: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    import polars as pl

    from scalp.notebook import Run
    from tests.cli_util import REPO

    prefix, policy, _, _, _ = live_session
    docs = (REPO / "docs" / "research.md").read_text()
    section = docs[docs.index("## From Python (notebooks)") :]
    example = section[section.index("```python\n") + len("```python\n") : section.index("```\n\n", 10)]
    (tmp_path / "policy.yaml").write_text(policy.read_text())
    (tmp_path / "example.py").write_text(example)
    proc = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env={**os.environ, "SCALP_TOPIC_PREFIX": prefix, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no-vwap" in proc.stdout
    base, other = Run.load("base", tmp_path / "runs"), Run.load("no-vwap", tmp_path / "runs")
    assert other.meta["offsets"] == base.meta["offsets"]
    assert "vwap_reclaim" in set(base.signals["setup"])
    assert str(base.trades["ts"].dtype) == "datetime64[ns, UTC]"
    assert base.frame("features", library="polars").schema["ts"] == pl.Datetime("ns", "UTC")
    assert len(base.frame("signals", library="arrow")) == base.meta["outputs"]["signals"]["rows"]


def test_setups_and_risk_replay_from_the_stored_features_as_from_ticks(live_session: Any, tmp_path: Path) -> None:
    from backtest.replay import read_run

    prefix, policy, _, _, _ = live_session
    common = ["--policy", str(policy), "--no-feedback", "--out", str(tmp_path)]
    _run(prefix, "replay", "--run-id", "ticks", "--source", "kafka", *common)
    said = _run(prefix, "replay", "--run-id", "feats", "--source", "features", *common)
    (tick_meta, ticks), (meta, feats) = read_run(tmp_path / "ticks"), read_run(tmp_path / "feats")
    assert meta["source"] == "features"
    assert meta["ticks"] is False
    # the worker stamps its outputs with their event time (ms), as every catalog topic is: what a reader seeks by
    from kafkaio.reader import RangeReader
    from scalp.settings import load_settings

    kafka = load_settings().kafka.model_copy(update={"topic_prefix": prefix})
    with RangeReader(kafka, "scalp-reader-test") as reader:
        physical = kafka.topic("features")
        stamps = sorted(r.timestamp_ms for r in reader.read(physical, reader.bounds(physical)))
    assert stamps == sorted(t["ts"] // 1_000_000 for t in ticks["features"])
    assert set(meta["days"].values()) == {"kafka"}
    assert meta["inputs"] == tick_meta["outputs"]["features"]["rows"], said  # every snapshot, once
    for topic, key in (("signals", "id"), ("risk_decisions", "signal_id"), ("order_intents", "id")):
        assert ticks[topic], topic
        assert sorted(feats[topic], key=lambda r: r[key]) == sorted(ticks[topic], key=lambda r: r[key]), topic
    assert (feats.get("orders"), feats.get("fills")) == ([], [])  # no ticks, no paper broker
    # a policy change of setups is evaluated from the snapshots; one of feature parameters is refused
    data = yaml.safe_load(policy.read_text())
    data["setups"]["vwap_reclaim"]["enabled"] = False
    (tmp_path / "no_vwap.yaml").write_text(yaml.safe_dump(data))
    _run(prefix, "replay", "--run-id", "no-vwap", "--source", "features", "--policy", str(tmp_path / "no_vwap.yaml"),
         "--out", str(tmp_path))  # fmt: skip
    _, no_vwap = read_run(tmp_path / "no-vwap")
    assert {s["setup"] for s in no_vwap["signals"]} == {s["setup"] for s in ticks["signals"]} - {"vwap_reclaim"}
    data["features"]["sigma_k"] = data["features"].get("sigma_k", 2.0) + 0.5
    (tmp_path / "sigma.yaml").write_text(yaml.safe_dump(data))
    refused = scalp("replay", "--run-id", "sigma", "--source", "features", "--policy", str(tmp_path / "sigma.yaml"),
                    "--out", str(tmp_path), env={"SCALP_TOPIC_PREFIX": prefix})  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "other feature parameters (sigma_k)" in refused.stderr
    assert not (tmp_path / "sigma").exists()


def test_a_backtest_from_features_puts_realized_outcomes_next_to_the_labels(live_session: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    prefix, policy, _, executed, _ = live_session
    out = _run(prefix, "backtest", "--source", "features", "--policy", str(policy), "--no-feedback", "--out",
               str(tmp_path), "--run-id", "bt-f")  # fmt: skip
    run = tmp_path / "bt-f"
    realized = pq.read_table(run / "realized.parquet").to_pylist()
    closed = int(re.search(r"(\d+) trades closed", executed).group(1))  # type: ignore[union-attr]
    assert sum(r["round_trips"] for r in realized) == closed > 0
    assert all(r["sim_outcome"] in ("TP", "SL", "TIME") for r in realized)  # the quotes are still in Kafka
    assert f"realized: {len(realized)} signals traded live" in out
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["realized"]["all"]["traded"] == len(realized)
    assert summary["realized"]["all"]["labelled"] == len(realized)
    assert "Simulated vs realized" in (run / "report" / "index.html").read_text()
    assert (run / "report" / "realized_vs_simulated.png").stat().st_size > 5_000
    dataset = pq.read_table(run / "dataset.parquet").to_pylist()
    traded = {r["signal_id"]: r for r in realized}
    assert {r["id"] for r in dataset if r["realized_r"] is not None} == set(traded)
    assert all(r["realized_r"] == traded[r["id"]]["realized_r"] for r in dataset if r["id"] in traded)
