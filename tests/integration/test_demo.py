"""`scalp demo` end to end, as a user runs it (here under a test prefix), twice: the second run ingests
nothing again, writes nothing twice and still finds no drift."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from kafkaio.admin import TopicAdmin
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.cli_util import scalp


def test_demo_runs_the_whole_pipeline_and_can_run_again(services: AppSettings, tmp_path: Path) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}_"
    env = {"SCALP_TOPIC_PREFIX": prefix}
    runs = tmp_path / "runs"
    try:
        first = scalp("demo", "--no-stack", "--out", str(runs), env=env, timeout=900)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
        out = first.stdout
        assert "drift: none" in out, out
        assert "trades closed" in out
        assert "signals labelled" in out
        assert "no feature after its signal" in out
        meta = json.loads((runs / "demo" / "run.json").read_text())
        assert meta["outputs"]["signals"]["rows"] > 0
        assert meta["outputs"]["trade_ledger"]["rows"] > 0
        assert (runs / "demo" / "dataset.parquet").exists()
        page = (runs / "demo" / "report" / "index.html").read_text()
        assert "No drift: every live decision was reproduced." in page
        assert "tune: " in out
        assert "live policy" in out
        proposal = (runs / "demo" / "session_policies.proposed.yaml").read_text()
        assert proposal.startswith("# PROPOSED by `scalp tune`")
        assert "Train days: 2026-11-20; validation days: 2026-11-23." in proposal
        assert (runs / "demo" / "tune_report.md").exists()

        again = scalp("demo", "--no-stack", "--out", str(runs), env=env, timeout=900)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        assert again.stderr.count("already in the topics; not ingested again") == 3
        # the only new records: the risk module's day state after each closed trade of the first run (the
        # worker ran before the router then, so it reads their ledger records now); the tables are shared,
        # so rows another run already wrote for those keys are not written again
        trades = meta["outputs"]["trade_ledger"]["rows"]
        assert f"outputs {{'risk_day': {trades}}}" in again.stdout, again.stdout
        written = re.search(r"sink: (\d+) rows written", again.stdout)
        assert written is not None
        assert int(written.group(1)) <= trades
        assert "drift: none" in again.stdout
        meta_again = json.loads((runs / "demo" / "run.json").read_text())
        assert meta_again["outputs"] == meta["outputs"]  # the same replay, bit for bit
    finally:
        TopicAdmin(services.kafka, catalog()).delete_prefixed(prefix)
