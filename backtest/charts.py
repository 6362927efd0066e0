"""Charts of what happened in the market, per New York day and symbol, from a run's outputs: the price (the
last eligible trade of each feature snapshot) with VWAP and its sigma bands, every setup candidate marked by
its status (promoted, blocked, generated), and each paper trade's entry, exit and stop (from its intent).

Two forms of the same charts: static PNGs (matplotlib, ``sessions/<day>_<symbol>.png``) and one interactive
page (plotly, ``sessions.html``, with plotly's script written next to it: no network needed to open it).
Both come from the run's files alone and are the same for the same run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.topics import FEATURES, ORDER_INTENTS, SIGNALS, TRADE_LEDGER
from streams.core.sessions import ET

NS = 1_000_000_000
STATUS_STYLE = {  # status -> (matplotlib marker colour, label)
    "promoted": ("#1a7f37", "promoted"),
    "blocked": ("#9a9a9a", "blocked"),
    "generated": ("#d08700", "generated"),
}
PLOTLY_JS = "plotly.min.js"


@dataclass
class Session:
    """One day and symbol: the series and the marks of its chart."""

    day: str
    symbol: str
    ts: list[int] = field(default_factory=list)
    price: list[float | None] = field(default_factory=list)
    vwap: list[float | None] = field(default_factory=list)
    upper: list[float | None] = field(default_factory=list)
    lower: list[float | None] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.day}_{self.symbol}"


def _day(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / NS, ET).date().isoformat()


def _time(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / NS, ET).replace(tzinfo=None)  # New York wall time on the axis


def sessions(outputs: dict[str, list[dict[str, Any]]]) -> list[Session]:
    """The charts' data, one per (day, symbol) with feature snapshots, in day then symbol order."""
    found: dict[tuple[str, str], Session] = {}

    def session(ns: int, symbol: str) -> Session:
        key = (_day(ns), symbol)
        if key not in found:
            found[key] = Session(*key)
        return found[key]

    for f in sorted(outputs.get(FEATURES, []), key=lambda r: (r["symbol"], r["ts"])):
        s = session(f["ts"], f["symbol"])
        s.ts.append(f["ts"])
        s.price.append(f.get("last_price"))
        s.vwap.append(f.get("vwap"))
        s.upper.append(f.get("sigma_upper"))
        s.lower.append(f.get("sigma_lower"))
    for sig in sorted(outputs.get(SIGNALS, []), key=lambda r: (r["ts"], r["id"])):
        if (_day(sig["ts"]), sig["symbol"]) in found:
            found[(_day(sig["ts"]), sig["symbol"])].signals.append(sig)
    stops = {i["signal_id"]: i for i in outputs.get(ORDER_INTENTS, [])}
    for t in sorted(outputs.get(TRADE_LEDGER, []), key=lambda r: (r["ts"], r["id"])):
        key = (_day(t["ts_open"]), t["symbol"])
        if key in found:
            intent = stops.get(t["signal_id"]) or {}
            found[key].trades.append(
                {
                    **t,
                    "stop_loss": intent.get("stop_loss"),
                    "take_profit": intent.get("take_profit"),
                }
            )
    return [found[k] for k in sorted(found)]


def write_pngs(out: Path, charts: list[Session]) -> list[str]:
    """``out/<day>_<symbol>.png`` per chart; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(ns: int) -> float:
        return float(mdates.date2num(_time(ns)))  # type: ignore[no-untyped-call]

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    names = []
    for s in charts:
        fig, ax = plt.subplots(figsize=(12, 5), dpi=100)
        times = [when(t) for t in s.ts]
        ax.fill_between(times, _nan(s.lower), _nan(s.upper), color="#4c78a8", alpha=0.12, label="VWAP +/- k sigma")
        ax.plot(times, _nan(s.vwap), color="#4c78a8", linewidth=1.2, label="VWAP")
        ax.plot(times, _nan(s.price), color="#222", linewidth=0.8, label="price")
        for status, (colour, label) in STATUS_STYLE.items():
            marks = [x for x in s.signals if x["status"] == status]
            if marks:
                ax.scatter([when(x["ts"]) for x in marks], [x["reference_price"] for x in marks], s=22,
                           color=colour, marker="o", zorder=3, label=f"candidates: {label} ({len(marks)})")  # fmt: skip
        for i, t in enumerate(s.trades):
            up = t["side"] in ("buy", "long")
            entry, exit_ = when(t["ts_open"]), when(t["ts"])
            first = "" if i == 0 else "_"  # one legend entry per kind
            ax.scatter([entry], [float(t["entry_price"])], marker="^" if up else "v", s=70, color="#1a7f37",
                       edgecolor="black", zorder=4, label=f"{first}entry")  # fmt: skip
            ax.scatter([exit_], [float(t["exit_price"])], marker="X", s=60, color="#b42318", zorder=4,
                       label=f"{first}exit")  # fmt: skip
            if t["stop_loss"] is not None:
                ax.hlines(float(t["stop_loss"]), entry, exit_, colors="#b42318", linestyles="dashed",
                          linewidth=1.2, label=f"{first}stop")  # fmt: skip
        ax.set(title=f"{s.symbol} {s.day} (New York time)", ylabel="price")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncols=2)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out / f"{s.name}.png", metadata={"Software": "scalp-pipeline"})
        plt.close(fig)
        names.append(f"{s.name}.png")
    return names


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def write_html(path: Path, charts: list[Session], title: str) -> Path:
    """One interactive page of every chart, plotly's script in a file next to it (works offline)."""
    import plotly.graph_objects as go
    import plotly.offline

    parts = []
    for s in charts:
        times = [_time(t).isoformat() for t in s.ts]
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=times, y=s.upper, name="VWAP + k sigma", line={"width": 0}, showlegend=False))
        fig.add_trace(go.Scatter(x=times, y=s.lower, name="VWAP +/- k sigma", line={"width": 0}, fill="tonexty",
                                 fillcolor="rgba(76,120,168,0.15)"))  # fmt: skip
        fig.add_trace(go.Scatter(x=times, y=s.vwap, name="VWAP", line={"color": "#4c78a8", "width": 1.5}))
        fig.add_trace(go.Scatter(x=times, y=s.price, name="price", line={"color": "#222", "width": 1}))
        for status, (colour, label) in STATUS_STYLE.items():
            marks = [x for x in s.signals if x["status"] == status]
            if marks:
                fig.add_trace(go.Scatter(
                    x=[_time(x["ts"]).isoformat() for x in marks], y=[x["reference_price"] for x in marks],
                    mode="markers", marker={"color": colour, "size": 7}, name=f"candidates: {label}",
                    text=[f"{x['setup']} {x['side']} ({x['status']})" for x in marks], hoverinfo="text+x+y",
                ))  # fmt: skip
        if s.trades:
            fig.add_trace(go.Scatter(
                x=[_time(t["ts_open"]).isoformat() for t in s.trades], y=[float(t["entry_price"]) for t in s.trades],
                mode="markers", marker={"symbol": "triangle-up", "size": 11, "color": "#1a7f37"}, name="entry",
                text=[f"{t['side']} {t['qty']} ({t['exit_reason']}, {float(t['r_multiple']):+.2f}R)" for t in s.trades],
            ))  # fmt: skip
            fig.add_trace(go.Scatter(
                x=[_time(t["ts"]).isoformat() for t in s.trades], y=[float(t["exit_price"]) for t in s.trades],
                mode="markers", marker={"symbol": "x", "size": 10, "color": "#b42318"}, name="exit",
                text=[t["exit_reason"] for t in s.trades],
            ))  # fmt: skip
            for t in s.trades:
                if t["stop_loss"] is not None:
                    fig.add_shape(type="line", x0=_time(t["ts_open"]).isoformat(), x1=_time(t["ts"]).isoformat(),
                                  y0=float(t["stop_loss"]), y1=float(t["stop_loss"]),
                                  line={"color": "#b42318", "dash": "dash", "width": 1})  # fmt: skip
        fig.update_layout(title=f"{s.symbol} {s.day} (New York time)", height=480, margin={"t": 50, "b": 40},
                          template="plotly_white", yaxis_title="price")  # fmt: skip
        div = fig.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"chart-{s.name}", config={"displaylogo": False}
        )
        parts.append(f'<section class="chart" data-chart="{s.name}">{div}</section>')
    (path.parent / PLOTLY_JS).write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    empty = "" if charts else "<p>No feature snapshots in this run: nothing to chart.</p>"
    path.write_text(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{_escape(title)}</title><script src="{PLOTLY_JS}"></script>'
        "<style>body{font-family:system-ui,sans-serif;margin:1em 2em;}</style></head><body>"
        f"<h1>{_escape(title)}</h1>{empty}{''.join(parts)}"
        f"<script>window.scalpCharts = {json.dumps([s.name for s in charts])};</script></body></html>\n",
        encoding="utf-8",
    )
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def per_day(charts: list[Session]) -> dict[str, list[str]]:
    """day -> its charts' names (for the report's index)."""
    out: dict[str, list[str]] = defaultdict(list)
    for s in charts:
        out[s.day].append(s.name)
    return dict(out)
