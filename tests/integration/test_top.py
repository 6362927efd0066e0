"""`scalp top` in a real terminal (tmux): it draws the processes it scrapes and the ticks Kafka holds,
quits on q with exit 0 and leaves with SIGHUP (the pane closed) without a trace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from kafkaio.admin import TopicAdmin
from kafkaio.metrics import ProcessMetrics
from kafkaio.producer import AvroProducer
from scalp.settings import AppSettings
from schemas.catalog import catalog
from schemas.examples import example_record
from schemas.serde import AvroSerde
from tests.metrics_util import free_ports

REPO = Path(__file__).resolve().parents[2]


def _tmux(socket: str, *args: str) -> str:
    tool = shutil.which("tmux")
    assert tool is not None, "tmux not found: apt-get install tmux (./run installs it)"
    done = subprocess.run([tool, "-L", socket, *args], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout


def _screen_until(socket: str, target: str, wanted: list[str], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux(socket, "capture-pane", "-p", "-t", target)
        if all(w in screen for w in wanted):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"never showed {wanted}:\n{screen}")


def test_top_draws_the_pipeline_in_tmux_and_exits_cleanly(
    services: AppSettings, serde: AvroSerde, prefix: str, tmp_path: Path
) -> None:
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    serde = AvroSerde(serde.registry, kafka, serde.catalog)
    TopicAdmin(kafka, catalog()).create_all()
    trade = {**example_record(catalog(), "market_trades"), "symbol": "QQQ", "ts": 1_764_000_000_000_000_000}
    producer = AvroProducer(kafka, serde)
    producer.produce("market_trades", trade)
    producer.flush()
    (port,) = free_ports(1)
    metrics = ProcessMetrics("sink")
    metrics.set_lag([("market_quotes", 0, 1234)])
    server = metrics.serve(lambda: (True, {}), "127.0.0.1", port)
    assert server is not None
    socket = f"scalp-top-{os.getpid()}"
    env = {"SCALP_TOPIC_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SCALP_LOG_DIR": str(tmp_path)}  # fmt: skip
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    top = f"{sys.executable} -m scalp.cli top --interval 0.3 --endpoint sink=127.0.0.1:{port}"
    command = f"cd {REPO} && env {exports} {top}"
    status = tmp_path / "top.status"
    try:
        _tmux(
            socket,
            "new-session",
            "-d",
            "-s",
            "q",
            "-x",
            "160",
            "-y",
            "50",
            f"{command}; echo $? > {status}.part && mv {status}.part {status}",
        )
        _tmux(socket, "set-option", "-t", "q", "remain-on-exit", "on")
        screen = _screen_until(socket, "q", ["scalp top", "QQQ", "1,234"])
        assert "sink" in screen
        assert "down" in screen  # the other processes do not run here
        _tmux(socket, "send-keys", "-t", "q", "q")
        # its exit status as the shell saw it: tmux 3.3 may mark the pane dead (its terminal closed) before it
        # reaps the process, and then leave #{pane_dead_status} empty (tmux pull request 4841)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not status.exists():
            time.sleep(0.2)
        assert status.exists(), _tmux(socket, "capture-pane", "-p", "-S", "-200", "-t", "q")
        assert status.read_text().strip() == "0"
        # the pane closed under it (SIGHUP): it leaves too
        _tmux(socket, "new-session", "-d", "-s", "h", "-x", "160", "-y", "50", command)
        _screen_until(socket, "h", ["scalp top"])
        pid = int(_tmux(socket, "display", "-p", "-t", "h", "#{pane_pid}").strip())
        children = psutil.Process(pid).children(recursive=True)
        _tmux(socket, "kill-session", "-t", "h")
        _, alive = psutil.wait_procs([psutil.Process(pid), *children], timeout=15)
        assert alive == []
    finally:
        _tmux(socket, "kill-server")
        server.shutdown()
