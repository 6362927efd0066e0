"""The monitoring files (alert rules, Prometheus configurations, the Grafana dashboard and its provisioning)
and the one metrics interface. Rules are checked and unit-tested by promtool (Debian's prometheus package,
which ./run installs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from kafkaio.metrics import ProcessMetrics
from scalp.cliutil import metrics_port_option
from scalp.settings import AppSettings
from scalp.stack.prometheus import Prometheus
from scalp.stack.settings import StackSettings
from streams.metrics import LIMITS
from tests.metrics_util import DASHBOARD, MONITORING, RULES, dashboard_exprs, free_ports, queried

REPO = Path(__file__).resolve().parents[2]


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool not found: apt-get install prometheus (./run installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def test_the_alert_rules_are_valid_and_fire_when_they_should() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert names >= {
        "ScalpWorkerDown", "ScalpNoTicksDuringRegularHours", "ScalpConsumerLagGrowing", "ScalpDeadLetters",
        "ScalpGapUnrepaired", "ScalpTradingHalted",
    }  # fmt: skip
    untested = names - set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts.test.yml").read_text()))
    assert untested == set()


def test_both_prometheus_configurations_are_valid(tmp_path: Path) -> None:
    compose_config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert compose_config["rule_files"] == ["/etc/prometheus/alerts.yml"]  # where compose mounts alerts.yml
    compose_config["rule_files"] = [str(RULES)]
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(compose_config))
    local = Prometheus(StackSettings(state_dir=tmp_path), {"ingest": 9467, "streams": 9465, "sink": 0})
    (tmp_path / "local.yml").write_text(yaml.safe_dump(local.render()))
    for name in ("compose.yml", "local.yml"):
        checked = promtool("check", "config", name, cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = [job["job_name"] for job in local.render()["scrape_configs"]]  # type: ignore[index]
    assert jobs == ["scalp-ingest", "scalp-streams"]  # a process whose metrics are off is not scraped


def test_compose_scrapes_each_service_on_the_port_it_exposes_and_provisions_the_dashboard() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        (target,) = job["static_configs"][0]["targets"]
        host, port = target.split(":")
        assert job["job_name"] == f"scalp-{host}"
        assert services[host]["expose"] == [port]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), volume
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"  # anonymous users only look


def test_the_dashboard_and_rules_query_the_issue_s_signals() -> None:
    names = queried()
    for wanted in (
        "scalp_ingest_events_total", "scalp_consumer_lag_messages", "scalp_streams_output_delay_seconds_bucket",
        "scalp_execute_delay_seconds_bucket", "scalp_ingest_gaps_unrepaired_total", "scalp_execute_trading_state",
        "scalp_risk_day_realized_r", "process_cpu_seconds_total", "scalp_sink_dead_letters_total",
    ):  # fmt: skip
        assert wanted in names
    assert all(expr.strip() for expr in dashboard_exprs())


def test_the_breach_flags_exported_are_the_risk_engine_s() -> None:
    source = (REPO / "streams/core/risk.py").read_text()
    assert set(re.findall(r'breach_flags\.add\("(\w+)"\)', source)) == set(LIMITS)


def test_a_process_serves_prometheus_exposition_and_its_health() -> None:
    metrics = ProcessMetrics("sink")
    counter = metrics.counter("scalp_test_things", "things", ["kind"])
    counter.labels("a").inc(3)
    healthy = [True]
    (port,) = free_ports(1)
    server = metrics.serve(lambda: (healthy[0], {"status": "ok" if healthy[0] else "stuck"}), "127.0.0.1", port)
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
        assert 'scalp_test_things_total{kind="a"} 3.0' in text
        assert 'scalp_build_info{process="sink"' in text
        assert "process_resident_memory_bytes" in text
        assert "python_gc_objects_collected_total" in text
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 (http, built above)
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert resp.read().decode().rstrip().endswith("# EOF")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert json.loads(resp.read()) == {"status": "ok"}
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert err.value.code == 503
    finally:
        server.shutdown()
    assert metrics.serve(lambda: (True, {}), "127.0.0.1", 0) is None  # 0: off


def test_lag_series_follow_the_partitions_a_process_reads() -> None:
    metrics = ProcessMetrics("streams")
    metrics.set_lag([("market_trades", 0, 5), ("market_trades", 1, -2)])
    metrics.set_lag([("market_trades", 1, 7)])  # partition 0 went to another worker
    samples = {(s.labels["partition"], s.value) for f in metrics.lag.collect() for s in f.samples}
    assert samples == {("1", 7.0)}


def test_metrics_port_overrides_the_setting_and_is_checked() -> None:
    seen: list[int] = []

    @click.command()
    @metrics_port_option("sink", 9464)
    @click.pass_context
    def cmd(ctx: click.Context) -> None:
        seen.append(ctx.obj.settings.sink.http_port)

    class Obj:
        settings = AppSettings()

    runner = CliRunner()
    assert runner.invoke(cmd, ["--metrics-port", "0"], obj=Obj()).exit_code == 0
    assert runner.invoke(cmd, [], obj=Obj()).exit_code == 0
    assert seen == [0, AppSettings().sink.http_port]
    refused = runner.invoke(cmd, ["--metrics-port", "70000"], obj=Obj())
    assert refused.exit_code == 2
    assert "70000" in refused.output
