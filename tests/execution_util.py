"""Helpers for execution tests: the local Tradier-protocol server, intents, and `scalp execute` runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from connectors.process import ready_server
from scalp.settings import DEFAULT_CONFIG

ACCOUNT = "VA0000001"
NS = 1_000_000_000


@dataclass
class TradierServer:
    base_url: str
    stream_url: str
    token: str

    def control(self, path: str, body: Any = None) -> Any:
        root = self.base_url.removesuffix("/v1")
        if body is None and path == "state":
            reply = requests.get(f"{root}/_control/state", timeout=10)
        else:
            reply = requests.post(f"{root}/_control/{path}", json=body or {}, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def state(self) -> dict[str, Any]:
        return self.control("state")  # type: ignore[no-any-return]

    def order_with_tag(self, tag: str) -> dict[str, Any] | None:
        return next((o for o in self.state()["orders"] if o.get("tag") == tag), None)

    def fill(self, order_id: int, leg: int | None, qty: int, price: float) -> None:
        self.control("fill", {"order_id": order_id, "leg": leg, "qty": qty, "price": price})


@contextlib.contextmanager
def tradier_server(heartbeat_s: float = 60.0) -> Iterator[TradierServer]:
    token = f"tok-{uuid.uuid4().hex}"
    args = ["--token", token, "--account", ACCOUNT, "--heartbeat-s", str(heartbeat_s)]
    with ready_server("tests.servers.tradier", args) as (_, (base_url, stream_url)):
        yield TradierServer(base_url, stream_url, token)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def make_intent(signal_id: str, ts: int, **over: Any) -> dict[str, Any]:
    base = {
        "id": f"oi-{signal_id}",
        "signal_id": signal_id,
        "ts": ts,
        "symbol": "SPY",
        "instrument": "equity",
        "option_symbol": None,
        "side": "buy",
        "qty": 100,
        "entry_type": "limit",
        "entry_limit": 450.10,
        "take_profit": 450.50,
        "stop_loss": 449.90,
        "time_stop_ts": ts + 3600 * NS,
        "risk_per_share": 0.20,
        "reference_price": 450.08,
    }
    return {**base, **over}


# Tests trade on the wall clock of the test server: the end-of-day cutoff would refuse entries when they run
# late in the US/Eastern day, and the router's start-up may take longer than the default intent age on a
# busy machine. Tests that exercise those limits set them.
TEST_LIMITS = {"eod_flatten_minutes": 0, "max_intent_age_s": 120}


def execute_config(tmp: Path, **execution: Any) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    limits = {**TEST_LIMITS, **execution.pop("limits", {})}
    data["execution"] = {"poll_interval_s": 0.5, "limits": limits, "http_port": 0, **execution}
    path = tmp / "execute-config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_execute(
    tmp: Path,
    prefix: str,
    dsn: str,
    server: TradierServer | None,
    *args: str,
    token: str | None = None,
    env_extra: dict[str, str] | None = None,
    **execution: Any,
) -> subprocess.Popen[str]:
    from tests.sink_util import migrated

    migrated(dsn)  # the router never migrates: the owner does, before it starts
    env = {**os.environ, "SCALP_TOPIC_PREFIX": prefix, "DATABASE_URL": dsn, "SCALP_LOG_DIR": str(tmp / "logs")}
    env.update(env_extra or {})
    if server is not None:
        env.update(
            TRADIER_TOKEN=token or server.token,
            TRADIER_ACCOUNT_ID=ACCOUNT,
            TRADIER_BASE_URL=server.base_url,
            TRADIER_STREAM_URL=server.stream_url,
        )
    cmd = [sys.executable, "-m", "scalp.cli", "--config", str(execute_config(tmp, **execution)), "execute", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc: subprocess.Popen[str], timeout_s: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, out[-4000:]
    return str(out)
