"""`scalp stack up --monitoring`'s Prometheus (Debian's binary) scrapes a process through the one metrics
interface and evaluates the alert rules: a worker that stops answering raises ScalpWorkerDown."""

from __future__ import annotations

from pathlib import Path

import requests

from kafkaio.metrics import ProcessMetrics
from scalp.stack.prometheus import Prometheus
from scalp.stack.settings import StackSettings
from tests.execution_util import wait_for
from tests.metrics_util import free_ports


def _query(url: str, expr: str) -> list[dict]:  # type: ignore[type-arg]
    resp = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    return resp.json()["data"]["result"]  # type: ignore[no-any-return]


def test_local_prometheus_scrapes_the_pipeline_and_alerts_when_a_worker_goes(tmp_path: Path) -> None:
    prom_port, sink_port = free_ports(2)
    settings = StackSettings(state_dir=tmp_path, prometheus_port=prom_port, scrape_interval_s=1)
    metrics = ProcessMetrics("sink")
    metrics.set_lag([("market_quotes", 0, 42)])
    server = metrics.serve(lambda: (True, {}), "127.0.0.1", sink_port)
    assert server is not None
    prometheus = Prometheus(settings, {"sink": sink_port})
    prometheus.prepare()
    assert prometheus.start()
    try:
        assert prometheus.status().healthy
        lag = wait_for("the lag", lambda: _query(prometheus.url, 'scalp_consumer_lag_messages{job="scalp-sink"}'))
        assert lag[0]["metric"]["topic"] == "market_quotes"
        assert lag[0]["value"][1] == "42"
        rules = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["health"] for g in rules for r in g["rules"]} == {"ok"}
        assert not prometheus.start()  # running: reloaded, not started twice
        server.shutdown()
        down = wait_for("the alert", lambda: _query(prometheus.url, 'ALERTS{alertname="ScalpWorkerDown"}'), 30)
        assert down[0]["metric"]["job"] == "scalp-sink"  # pending (it fires after a minute down)
    finally:
        prometheus.stop()
    assert prometheus.pid() is None
