"""Prometheus from the Debian package (``apt-get install prometheus``; ``./run`` installs it), scraping the
pipeline's processes on this machine and evaluating the alert rules of ``infra/monitoring/alerts.yml``:
`scalp stack up --monitoring`. The jobs are named as in docker-compose (scalp-ingest, scalp-streams,
scalp-sink, scalp-execute), so the rules and the Grafana dashboard work on both."""

from __future__ import annotations

import requests
import yaml

from .base import ProcessService, ServiceStatus, require_tool
from .procs import ensure_port_free, spawn, wait_until
from .settings import REPO_ROOT, StackSettings

RULES = REPO_ROOT / "infra" / "monitoring" / "alerts.yml"


class Prometheus(ProcessService):
    name = "prometheus"

    def __init__(self, settings: StackSettings, targets: dict[str, int]) -> None:
        """``targets``: process (ingest, streams, sink, execute) -> the port of its /metrics."""
        super().__init__(settings, "prometheus")
        self.targets = targets
        self.config = self.home / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.prometheus_port}"

    def render(self) -> dict[str, object]:
        interval = f"{self.settings.scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": f"scalp-{process}", "static_configs": [{"targets": [f"{self.settings.host}:{port}"]}]}
                for process, port in sorted(self.targets.items())
                if port
            ],
        }

    def prepare(self) -> None:
        require_tool("prometheus", "install prometheus (Debian: apt-get install prometheus)")
        if not RULES.is_file():
            raise self._fail(f"{RULES} not found (the alert rules ship with the checkout)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(self.render(), sort_keys=False))

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start(self) -> bool:
        if self.pid() is not None:
            requests.post(f"{self.url}/-/reload", timeout=5)  # the targets may have changed
            return False
        ensure_port_free(self.name, self.settings.host, self.settings.prometheus_port)
        argv = [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--storage.tsdb.retention.time={self.settings.metrics_retention}",
            f"--web.listen-address={self.settings.host}:{self.settings.prometheus_port}",
            "--web.enable-lifecycle",
        ]
        spawn(argv, self.log_file, self.pid_file, cwd=self.home)
        wait_until(self.name, self._answers, self.settings.start_timeout_s, self._alive, self.log_file)
        return True

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = pid is not None and self._answers()
        jobs = ", ".join(f"scalp-{p}:{port}" for p, port in sorted(self.targets.items()) if port)
        return ServiceStatus(self.name, pid is not None, healthy, pid, self.url, f"scrapes {jobs}")
