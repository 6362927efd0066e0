"""`scalp demo` end to end, as a user runs it (here under a test prefix), twice: first from the checkout (pure
Python), then from the compiled wheel (the image's build) installed into a fresh virtualenv outside the checkout
(from the lock), run from another directory. The second run ingests nothing again, writes nothing twice, finds
no drift and replays the same outputs bit for bit: the installed package stands alone and behaves as the
checkout does, compiled or not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from kafkaio.admin import TopicAdmin
from scalp.build import COMPILED_MODULES
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.cli_util import scalp

REPO = Path(__file__).resolve().parents[2]


def run_installed(scalp_bin: Path, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCALP_CONFIG", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(scalp_bin), *args], capture_output=True, text=True, env={**clean, **env}, cwd=cwd, timeout=900, check=False
    )


def test_the_installed_package_stands_alone(installed_scalp: Path, tmp_path: Path) -> None:
    python = installed_scalp.with_name("python")
    where = subprocess.run(
        [str(python), "-c", "import scalp, scalp_config, streams.core.policy as p; print(scalp.__file__); "
         "print(scalp_config.HERE); print(p.POLICY_FILE.exists())"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    ).stdout.split()  # fmt: skip
    venv = str(installed_scalp.parents[1])
    assert where[0].startswith(venv)
    assert where[1].startswith(venv)  # the default config files come from the package
    assert where[2] == "True"
    version = subprocess.run(  # from outside the checkout: `python -m` puts the working directory first on the path
        [str(python), "-m", "scalp", "--version"], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert version.stdout.startswith("scalp, version ")
    assert (
        f"(compiled with mypyc: {len(COMPILED_MODULES)} of {len(COMPILED_MODULES)} hot-path modules)" in version.stdout
    )


def warnings_of(cwd: Path, service: str) -> str:
    """The warnings a step of a demo run from ``cwd`` logged (its stdout says only how it ended)."""
    path = cwd / ".scalp" / "logs" / f"{service}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return "\n".join(line for line in lines if '"level": "WARNING"' in line or '"level": "ERROR"' in line)


@pytest.mark.timeout(1200)  # two demos (about 4 minutes each on 2 cores) and the wheel's install
def test_demo_runs_the_whole_pipeline_and_can_run_again(
    services: AppSettings, tmp_path: Path, installed_scalp: Path
) -> None:
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

        elsewhere = tmp_path / "elsewhere"  # the installed wheel, run from a directory outside the checkout
        elsewhere.mkdir()
        # the same code and settings stamp the same digests, wherever they are installed and run from; the
        # commit is the checkout's (an installed package has no .git: images take it as SCALP_SOURCE_COMMIT)
        from streams.core.digests import source_commit

        same = {**env, "SCALP_SOURCE_COMMIT": source_commit()}
        again = run_installed(installed_scalp, elsewhere, "demo", "--no-stack", "--out", str(runs), env=same)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        assert again.stderr.count("already in the topics; not ingested again") == 3
        # the only new records: the risk module's day state after each closed trade of the first run (the
        # worker ran before the router then, so it reads their ledger records now); the tables are shared,
        # so rows another run already wrote for those keys are not written again
        trades = meta["outputs"]["trade_ledger"]["rows"]
        assert f"outputs {{'risk_day': {trades}}}" in again.stdout, again.stdout + warnings_of(elsewhere, "streams")
        written = re.search(r"sink: (\d+) rows written", again.stdout)
        assert written is not None
        assert int(written.group(1)) <= trades
        assert "drift: none" in again.stdout
        meta_again = json.loads((runs / "demo" / "run.json").read_text())
        assert meta_again["outputs"] == meta["outputs"]  # the same replay, bit for bit
    finally:
        TopicAdmin(services.kafka, catalog()).delete_prefixed(prefix)
