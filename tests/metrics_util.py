"""What the dashboard and the alert rules query, and what a process's /metrics exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.probes import Background
from scalp.stack.procs import free_ports

__all__ = ["free_ports"]

MONITORING = Path(__file__).resolve().parents[1] / "infra" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "scalp-pipeline.json"
RULES = MONITORING / "alerts.yml"
_NAME = re.compile(r"\b((?:scalp|process)_[a-z0-9_]+)\b")


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def queried() -> set[str]:
    """Every series name the dashboard and the rules use (Prometheus' own ``up`` and functions aside)."""
    return {m for expr in dashboard_exprs() + rule_exprs() for m in _NAME.findall(expr)}


def sample_names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


class Scraper(Background):
    """Scrapes /metrics of each (name, port) every ``every_s`` in a thread; keeps every name seen."""

    def __init__(self, ports: dict[str, int], every_s: float = 1.0) -> None:
        super().__init__()
        self.ports = ports
        self.every_s = every_s
        self.seen: dict[str, set[str]] = {name: set() for name in ports}
        self.texts: dict[str, str] = {}
        self.health: dict[str, int] = {}

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for name, port in self.ports.items():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                        text = resp.read().decode()
                    self.texts[name] = text
                    self.seen[name] |= sample_names(text)
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                        self.health[name] = resp.status
                except OSError:
                    continue
