"""The pipeline under supervisord (`scalp deploy`): a synthetic session flows through ingest, streams, the
sink and the paper router; the streams worker and the sink are SIGKILLed mid-session, supervisord brings
them back, and every table ends with exactly the distinct records of its topic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from kafkaio.admin import TopicAdmin
from kafkaio.reader import read_topic
from kafkaio.registry import SchemaRegistry
from scalp.settings import DEFAULT_CONFIG, AppSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
from tests.metrics_util import Scraper, free_ports, queried
from tests.sink_util import migrated

REPO = Path(__file__).resolve().parents[2]


def _scalp(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scalp.cli", "--config", str(config), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def _top_shows_every_process_up(config: Path, env: dict[str, str]) -> None:
    """`scalp top --once` sees all four processes up, mid-session, and the symbols' last ticks."""
    deadline = time.monotonic() + 30
    while True:
        view = _scalp(config, "top", "--once", "--interval", "1", env={**env, "COLUMNS": "200"})
        assert view.returncode == 0, view.stdout + view.stderr
        lines = view.stdout.splitlines()
        up = {x.split()[1] for x in lines if x.startswith("│ ") and "│ up " in x}
        if up == {"ingest", "streams", "sink", "execute"} and any(x.startswith("│ SPY ") for x in lines):
            return
        assert time.monotonic() < deadline, view.stdout


def _every_queried_series_was_exported(scraper: Scraper) -> None:
    """Each process answered /metrics and /healthz with its own series and the process collectors, and
    every series the Grafana dashboard and the alert rules query was exported by one of them."""
    for name, seen in scraper.seen.items():
        assert any(series.startswith(f"scalp_{name}_") for series in seen), (name, sorted(seen))
        assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "scalp_build_info"} <= seen, name
        assert scraper.health.get(name) == 200, (name, scraper.health)
    exported = set().union(*scraper.seen.values())
    missing = sorted(queried() - exported)
    assert missing == [], f"queried by the dashboard or the rules, exported by no process: {missing}"
    assert "scalp_consumer_lag_messages" in scraper.seen["sink"]
    assert "scalp_consumer_lag_messages" in scraper.seen["streams"]


def _distinct(records: list[dict[str, Any]]) -> int:
    return len({json.dumps(r, sort_keys=True, default=str) for r in records})


def test_supervised_pipeline_recovers_from_sigkills_and_every_table_equals_its_topic(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    dsn = migrated(fresh_db)
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    TopicAdmin(kafka, catalog()).create_all()
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    ports = dict(zip(("ingest", "streams", "sink", "execute"), free_ports(4), strict=True))
    data.setdefault("polygon", {})["http_port"] = ports["ingest"]
    data.setdefault("streams", {})["http_port"] = ports["streams"]
    data.setdefault("execution", {})["http_port"] = ports["execute"]
    data.setdefault("sink", {}).update(http_port=ports["sink"], group_id=f"sink-{prefix}")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "SCALP_TOPIC_PREFIX": prefix, "DATABASE_URL": dsn, "SCALP_LOG_DIR": str(tmp_path / "logs")}
    deploy = str(tmp_path / "deploy")
    written = _scalp(
        config, "deploy", "write", "--dir", deploy, "--feed", "synthetic", "--date", "2026-11-20",
        "--start", "09:30", "--end", "09:42", "--speed", "20", env=env,
    )  # fmt: skip
    assert written.returncode == 0, written.stdout + written.stderr
    started = _scalp(config, "deploy", "start", "--dir", deploy, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    scraper = Scraper(ports).__enter__()  # every process's /metrics, all along the session
    try:

        def states() -> dict[str, list[str]]:
            out = _scalp(config, "deploy", "status", "--dir", deploy, env=env).stdout
            return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = states()
            if all(now.get(p, [""])[0] == "RUNNING" for p in ("streams", "sink", "execute")):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"programs did not start: {states()}")
        _top_shows_every_process_up(config, env)
        time.sleep(6)  # mid-session: ingest is publishing, the worker and the sink are busy
        before = {p: int(states()[p][1]) for p in ("streams", "sink")}
        for pid in before.values():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = states()
            back = all(now[p][0] == "RUNNING" and int(now[p][1]) != before[p] for p in before)
            if back:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"supervisord did not bring them back: {states()}")
        # the session ends (ingest exits 0: EXITED, not restarted); then the tables catch up with the topics
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and states().get("ingest", [""])[0] != "EXITED":
            time.sleep(1)
        assert states()["ingest"][0] == "EXITED", states()
        serde = AvroSerde(SchemaRegistry(services.registry), kafka, catalog())
        topics = [spec.name for spec in catalog()]
        deadline = time.monotonic() + 240
        differences: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            time.sleep(5)
            with psycopg.connect(dsn) as conn:
                rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in topics}  # type: ignore[index]  # noqa: S608
            distinct = {t: _distinct(list(read_topic(kafka, serde, t, timeout_s=30))) for t in topics}
            differences = {t: (distinct[t], rows[t]) for t in topics if distinct[t] != rows[t]}
            if not differences and rows["market_trades"] > 0 and rows["features"] > 0:
                break
        assert differences == {}, f"topic distinct records vs table rows: {differences}"
        assert rows["market_quotes"] > 1000
        assert rows["signals"] > 0 or rows["features"] > 0
        final = states()
        assert final["streams"][0] == "RUNNING"
        assert final["sink"][0] == "RUNNING"
        logs = sorted(p.name for p in (Path(deploy) / "logs").iterdir() if p.suffix == ".log")
        assert logs == ["execute.log", "ingest.log", "sink.log", "streams.log"]
        scraper.__exit__()
        _every_queried_series_was_exported(scraper)
    finally:
        scraper.__exit__()
        stopped = _scalp(config, "deploy", "stop", "--dir", deploy, env=env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
