"""`scalp top`: a live terminal view of the running pipeline (see scalp.top for what it reads)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kafkaio.errors import ConfigError

from .cliutil import guarded
from .context import Context
from .top import KafkaTail, Top, TopView

ET = ZoneInfo("America/New_York")
PROCESSES = {"ingest": "polygon", "streams": "streams", "sink": "sink", "execute": "execution"}


def _age(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(view: TopView) -> Group:
    now_s = view.at_ns / 1e9
    stamp = dt.datetime.fromtimestamp(now_s, ET).strftime("%Y-%m-%d %H:%M:%S %Z")
    procs = Table("process", "state", "rate", "lag", "cpu", "memory", "endpoint", title=f"scalp top  {stamp}")
    for p in view.processes:
        state = Text("up", style="green") if p.up else Text("down", style="red")
        rate = f"{_num(p.rate, '{:,.1f}')} {p.unit}" if p.up else "-"
        memory = "-" if p.rss is None else f"{p.rss / 2**20:,.0f} MiB"
        detail = p.url if p.up else f"{p.url} ({p.error})"
        procs.add_row(p.name, state, rate, _num(p.lag), _num(p.cpu, "{:.2f}"), memory, detail)
    ticks = Table("symbol", "last trade (venue, ET)", "age", "last quote (venue, ET)", "age", title="last ticks")
    for symbol in sorted(view.last_tick):
        row: list[str] = [symbol]
        for kind in ("trade", "quote"):
            ms = view.last_tick[symbol].get(kind)
            if ms is None:
                row += ["-", "-"]
            else:
                when = dt.datetime.fromtimestamp(ms / 1e3, ET).strftime("%m-%d %H:%M:%S.%f")[:-3]
                row += [when, _age(now_s - ms / 1e3)]
        ticks.add_row(*row)
    if not view.last_tick:
        ticks.add_row("(no market records in Kafka)", "", "", "", "")
    trading = Table("trading state", "open trades", "risk day", "trades taken", "realised R", "max drawdown R",
                    "limits breached", title="orders and risk")  # fmt: skip
    day = view.risk_day
    trading.add_row(
        view.trading_state() or "- (execute not running)",
        _num(view.open_trades()),
        "-" if day is None else str(day["ts_date"]),
        "-" if day is None else str(day["trades_taken"]),
        "-" if day is None else f"{day['r_realized']:+.2f}",
        "-" if day is None else f"{day['max_drawdown']:.2f}",
        "-" if day is None else (", ".join(day.get("breach_flags") or []) or "none"),
    )
    positions = Table("account", "symbol", "qty", "cost basis", "as of (ET)", title="open positions")
    for account, snap in sorted(view.accounts.items()):
        asof = dt.datetime.fromtimestamp(snap["ts"] / 1e9, ET).strftime("%m-%d %H:%M:%S")
        for pos in snap.get("positions") or []:
            positions.add_row(account, pos["symbol"], str(pos["qty"]), f"{pos['cost_basis']:,.2f}", asof)
        if not snap.get("positions"):
            positions.add_row(account, "(flat)", "", "", asof)
    parts: list[Any] = [procs, ticks, trading, positions]
    if view.kafka_error:
        parts.append(Text(f"Kafka: {view.kafka_error}", style="red"))
    parts.append(Text("q or Ctrl-C: quit", style="dim"))
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """stdin in cbreak mode while the view runs (when it is a terminal), restored on the way out."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(seconds: float, keys: bool) -> bool:
    """Wait ``seconds``; True when q was pressed meanwhile."""
    if not keys:
        time.sleep(seconds)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], seconds)
    return bool(ready) and os.read(sys.stdin.fileno(), 32).lower().startswith(b"q")


@click.command()
@click.option(
    "--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True, help="Seconds between refreshes."
)
@click.option("--once", is_flag=True, help="Print one view (two scrapes --interval apart, for the rates) and exit.")
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="NAME=HOST:PORT",
    help="Where a process serves /metrics (repeatable; default: 127.0.0.1 and each process's metrics port).",
)
@click.option("--no-kafka", is_flag=True, help="Only the metrics endpoints (no last ticks, risk day or positions).")
@click.pass_context
def top(ctx: click.Context, interval: float, once: bool, endpoints: tuple[str, ...], no_kafka: bool) -> None:
    """Live view of the running pipeline: per process rate, lag, CPU and memory (from /metrics), each
    symbol's last trade and quote with their age, the trading state, open trades, today's risk_day and the
    open positions (from Kafka). Works in any terminal, tmux included; q, Ctrl-C, SIGTERM or SIGHUP quit
    (exit 0)."""

    def run() -> None:
        context: Context = ctx.obj
        settings = context.settings
        urls = {}
        for name, section in PROCESSES.items():
            port = getattr(settings, section).http_port
            if port:
                urls[name] = f"http://127.0.0.1:{port}/metrics"
        for spec in endpoints:
            name, sep, where = spec.partition("=")
            if not sep or name not in PROCESSES or ":" not in where:
                raise ConfigError(f"--endpoint: NAME=HOST:PORT with NAME one of {', '.join(PROCESSES)} (got {spec!r})")
            urls[name] = f"http://{where}/metrics"
        tail = None if no_kafka else KafkaTail(settings.kafka, context.serde).start()
        view = Top(urls, tail)
        console = Console()
        try:
            if once:
                view.view()
                time.sleep(interval)
                if tail is not None:
                    tail.ready.wait(30)
                console.print(render(view.view()))
                return
            _live(view, console, interval)
        finally:
            if tail is not None:
                tail.stop()

    guarded(run)()


def _live(view: Top, console: Console, interval: float) -> None:
    stop: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with _keys() as keys, Live(render(view.view()), console=console, screen=True, auto_refresh=False) as live:
            while not stop:
                if _wait_for_quit(interval, keys):
                    break
                live.update(render(view.view()), refresh=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is the ordinary way out
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
