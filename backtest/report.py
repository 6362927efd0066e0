"""The back-test report: one HTML page with PNG plots, from a run directory.

Everything comes from files in the run (``run.json``, the replay's Parquet outputs, ``signal_labels``,
``drift.json``, ``live_fills.parquet``), so ``scalp report --run R`` rebuilds it offline and the same run
gives the same page. Plots: equity in R (the replay's paper trades, and the labelled promoted signals),
the R distribution, expectancy per setup, the drift summary, latency and slippage distributions of the live
fills in the range (when the live pipeline traded in it), realized against simulated R of the promoted
signals that traded live (realized.py), and a chart of each day and symbol (charts.py:
PNGs in ``report/sessions/`` and the interactive ``report/sessions.html``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.topics import FILLS, SIGNALS, TRADE_LEDGER
from streams.core.sessions import ET

NS = 1_000_000_000
TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Back-test {{ meta.run_id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; } .note { color: #666; font-size: 90%; }
</style></head><body>
<h1>Back-test {{ meta.run_id }}</h1>
<table>
<tr><th>range</th><td>{{ meta.from or "beginning" }} .. {{ meta.to or "end" }} ({{ meta.source }})</td></tr>
<tr><th>events replayed</th><td class="n">{{ meta.inputs }}</td></tr>
<tr><th>policy digest</th><td><code>{{ meta.session_policy_digest }}</code> ({{ meta.policy_file }})</td></tr>
<tr><th>settings digest</th><td><code>{{ meta.env_hash }}</code></td></tr>
<tr><th>source commit</th><td><code>{{ meta.source_commit }}</code></td></tr>
<tr><th>risk feedback</th><td>{{ "closed loop" if meta.feedback else "off (signals only)" }}</td></tr>
</table>

<h2>Paper trades (replay)</h2>
{% if trades.trades %}
<table><tr><th>trades</th><th>win rate</th><th>expectancy R</th><th>total R</th><th>max drawdown R</th>
<th>PnL after fees</th><th>fees</th><th>exits</th></tr>
<tr><td class="n">{{ trades.trades }}</td><td class="n">{{ pct(trades.win_rate) }}</td>
<td class="n">{{ num(trades.expectancy) }}</td><td class="n">{{ num(trades.total_r) }}</td>
<td class="n">{{ num(trades.max_drawdown_r) }}</td><td class="n">{{ trades.pnl }}</td>
<td class="n">{{ trades.fees }}</td><td>{{ trades.exits }}</td></tr></table>
{% else %}<p>No paper trades in this run.</p>{% endif %}
<img src="equity_r.png" alt="equity curve in R">
<img src="r_distribution.png" alt="R distribution">

<h2>Sessions</h2>
{% if charts %}<p>Per day and symbol: the price with VWAP and its sigma bands, every setup candidate by status, and
each paper trade's entry, exit and stop. <a href="sessions.html">Interactive version</a> (zoom, hover; works
offline).</p>
{% for c in charts %}<img src="sessions/{{ c }}.png" alt="session chart {{ c }}">
{% endfor %}{% else %}<p>No feature snapshots in this run: nothing to chart.</p>{% endif %}

<h2>Signals and labels</h2>
<p>Signals by status: {{ statuses }}. Labels (TP / SL / time stop, exit at the bid for longs and the ask for
shorts, rule <code>{{ rule or "-" }}</code>): {{ outcomes }}.</p>
<table><tr><th>setup</th><th>candidates</th><th>promoted</th><th>labelled</th><th>win rate</th>
<th>expectancy R</th><th>total R</th><th>paper trades</th><th>paper total R</th></tr>
{% for s in setups %}<tr><td>{{ s.setup }}</td><td class="n">{{ s.candidates }}</td><td class="n">{{ s.promoted }}</td>
<td class="n">{{ s.stats.trades }}</td><td class="n">{{ pct(s.stats.win_rate) }}</td>
<td class="n">{{ num(s.stats.expectancy) }}</td><td class="n">{{ num(s.stats.total_r) }}</td>
<td class="n">{{ s.paper.trades }}</td><td class="n">{{ num(s.paper.total_r) }}</td></tr>{% endfor %}
</table>
<p class="note">Label statistics are over promoted signals; the paper trades are what the risk module let through.</p>
<img src="setup_expectancy.png" alt="expectancy per setup">

<h2>Simulated vs realized</h2>
{% if realized.all.traded %}
<p>Promoted signals that traded live: their realized outcome (the router's round trips: R and PnL after
fees, exit reason) next to the simulated TP / SL / time-stop label.</p>
<table><tr><th>setup</th><th>traded live</th><th>with a label</th><th>simulated mean R</th><th>realized mean R</th>
<th>gap R (realized - simulated)</th><th>same outcome</th><th>realized PnL</th></tr>
{% for name, r in [("all", realized.all)] + realized.per_setup.items()|list %}<tr><td>{{ name }}</td>
<td class="n">{{ r.traded }}</td><td class="n">{{ r.labelled }}</td><td class="n">{{ num(r.sim_mean_r) }}</td>
<td class="n">{{ num(r.realized_mean_r) }}</td><td class="n">{{ num(r.mean_gap_r) }}</td>
<td class="n">{{ pct(r.outcome_agreement) }}</td><td class="n">{{ plain(r.realized_pnl) }}</td></tr>{% endfor %}
</table>
<img src="realized_vs_simulated.png" alt="realized vs simulated R">
{% else %}<p>No live trades in this range: nothing realized to compare.</p>{% endif %}

<h2>Per day</h2>
<table><tr><th>day (ET)</th><th>signals</th><th>promoted</th><th>labelled R of promoted</th><th>paper trades</th>
<th>paper R</th></tr>
{% for d in days %}<tr><td>{{ d.day }}</td><td class="n">{{ d.signals }}</td><td class="n">{{ d.promoted }}</td>
<td class="n">{{ num(d.label_r) }}</td><td class="n">{{ d.trades }}</td><td class="n">{{ num(d.trade_r) }}</td></tr>
{% endfor %}</table>

<h2>Drift against the live decisions</h2>
{% if drift %}
<p>{{ "No drift: every live decision was reproduced." if drift.clean else "Drift found." }}</p>
<table><tr><th>topic</th><th>matched</th><th>differing</th><th>missing (live only)</th><th>extra (replay only)</th>
<th>first difference</th></tr>
{% for name, t in drift.topics.items() %}<tr><td>{{ name }}</td><td class="n">{{ t.matched }}</td>
<td class="n">{{ t.differing }}</td><td class="n">{{ t.missing }}</td><td class="n">{{ t.extra }}</td>
<td>{% if t.first_differences %}{{ t.first_differences[0].key }} {{ t.first_differences[0].field }}:
live {{ t.first_differences[0].live }} / replay {{ t.first_differences[0].replay }}{% endif %}</td></tr>{% endfor %}
</table>
<img src="drift.png" alt="drift summary">
{% else %}<p>No live features, signals, decisions or orders in this range: nothing to compare.</p>{% endif %}

<h2>Execution quality (live fills)</h2>
{% if fills %}
<table><tr><th>measure</th><th>fills</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>
{% for f in fills %}<tr><td>{{ f.name }}</td><td class="n">{{ f.n }}</td><td class="n">{{ plain(f.p50) }}</td>
<td class="n">{{ plain(f.p90) }}</td><td class="n">{{ plain(f.p99) }}</td><td class="n">{{ plain(f.max) }}</td></tr>
{% endfor %}</table>
<img src="latency.png" alt="latency distributions"> <img src="slippage.png" alt="slippage distribution">
{% else %}<p>No live fills in this range (the live pipeline did not trade in it).</p>{% endif %}

<h2>Files</h2>
<ul>{% for f in files %}<li><a href="../{{ f }}">{{ f }}</a></li>{% endfor %}</ul>
</body></html>
"""


@dataclass(frozen=True)
class RStats:
    trades: int
    win_rate: float | None
    expectancy: float | None
    total_r: float

    @staticmethod
    def of(rs: Sequence[float]) -> RStats:
        n = len(rs)
        return RStats(
            n,
            sum(1 for r in rs if r > 0) / n if n else None,
            sum(rs) / n if n else None,
            float(sum(rs)),
        )


def max_drawdown(rs: Iterable[float]) -> float:
    peak = equity = worst = 0.0
    for r in rs:
        equity += r
        peak = max(peak, equity)
        worst = min(worst, equity - peak)
    return worst


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def day_of(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / NS, ET).date().isoformat()


def summarize(
    meta: dict[str, Any],
    outputs: dict[str, list[dict[str, Any]]],
    labels: list[dict[str, Any]],
    drift: dict[str, Any] | None,
    live_fills: list[dict[str, Any]],
    realized: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from .realized import compare

    signals = outputs.get(SIGNALS, [])
    ledger = sorted(outputs.get(TRADE_LEDGER, []), key=lambda t: (t["ts"], t["id"]))
    setup_of = {s["id"]: s["setup"] for s in signals}
    promoted = {s["id"] for s in signals if s["status"] == "promoted"}
    promoted_labels = sorted((lab for lab in labels if lab["signal_id"] in promoted), key=lambda r: r["ts"])
    trade_rs = [float(t["r_multiple"]) for t in ledger]
    exits: dict[str, int] = {}
    for t in ledger:
        exits[t["exit_reason"]] = exits.get(t["exit_reason"], 0) + 1
    trades = {
        **asdict(RStats.of(trade_rs)),
        "max_drawdown_r": max_drawdown(trade_rs),
        "pnl": f"{sum(float(t['realized_pnl']) for t in ledger):.2f}",
        "fees": f"{sum(float(t['fees']) for t in ledger):.2f}",
        "exits": ", ".join(f"{k} {v}" for k, v in sorted(exits.items())),
    }
    setups = []
    for name in sorted({s["setup"] for s in signals}):
        rs = [lab["r"] for lab in promoted_labels if lab["setup"] == name]
        paper = [float(t["r_multiple"]) for t in ledger if setup_of.get(t["signal_id"]) == name]
        setups.append(
            {
                "setup": name,
                "candidates": sum(1 for s in signals if s["setup"] == name),
                "promoted": sum(1 for s in signals if s["setup"] == name and s["id"] in promoted),
                "stats": asdict(RStats.of(rs)),
                "paper": asdict(RStats.of(paper)),
            }
        )
    days = []
    for day in sorted({day_of(s["ts"]) for s in signals} | {day_of(t["ts"]) for t in ledger}):
        day_trades = [float(t["r_multiple"]) for t in ledger if day_of(t["ts"]) == day]
        days.append(
            {
                "day": day,
                SIGNALS: sum(1 for s in signals if day_of(s["ts"]) == day),
                "promoted": sum(1 for s in signals if day_of(s["ts"]) == day and s["id"] in promoted),
                "label_r": sum(lab["r"] for lab in promoted_labels if day_of(lab["ts"]) == day),
                "trades": len(day_trades),
                "trade_r": sum(day_trades),
            }
        )
    statuses: dict[str, int] = {}
    for s in signals:
        statuses[s["status"]] = statuses.get(s["status"], 0) + 1
    outcomes: dict[str, int] = {}
    for lab in labels:
        outcomes[lab["outcome"]] = outcomes.get(lab["outcome"], 0) + 1
    fills: list[dict[str, Any]] = []
    fill_values: dict[str, list[float]] = {}
    for name, key in (
        ("signal -> submit, ms", "submit_latency_ms"),
        ("submit -> broker ack, ms", "ack_latency_ms"),
        ("signal -> fill, ms", "latency_ms"),
        ("slippage, bps (positive = worse)", "slippage_bps"),
    ):
        values = [float(f[key]) for f in live_fills if f.get(key) is not None]
        if values:
            fill_values[key] = values
            fills.append(
                {
                    "name": name,
                    "key": key,
                    "n": len(values),
                    **{f"p{q}": percentile(values, q) for q in (50, 90, 99)},
                    "max": max(values),
                }
            )
    return {
        "meta": {k: v for k, v in meta.items() if k != "offsets"},
        "trades": trades,
        "equity_trades": trade_rs,
        "equity_labels": [lab["r"] for lab in promoted_labels],
        "label_rs": [lab["r"] for lab in promoted_labels],
        "setups": setups,
        "days": days,
        "statuses": ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none",
        "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none",
        "rule": labels[0]["rule_digest"] if labels else None,
        "drift": drift,
        FILLS: fills,
        "fill_values": fill_values,
        "realized": compare(realized or []),
        "realized_pairs": [(r["sim_r"], r["realized_r"]) for r in realized or [] if r["sim_r"] is not None],
    }


def _plots(out: Path, s: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.figsize": (9, 4), "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    meta = {"Software": "scalp-pipeline"}  # no creation time: the same run gives the same files

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, metadata=meta)
        plt.close(fig)

    fig, ax = plt.subplots()
    for values, label in ((s["equity_trades"], "paper trades (replay)"), (s["equity_labels"], "promoted signals")):
        if values:
            cumulative = [0.0]
            for r in values:
                cumulative.append(cumulative[-1] + r)
            ax.step(range(len(cumulative)), cumulative, where="post", label=f"{label}: {cumulative[-1]:+.2f} R")
    ax.axhline(0, color="#888", linewidth=0.8)
    ax.set(title="Equity in R", xlabel="trade / signal number (time order)", ylabel="cumulative R")
    if s["equity_trades"] or s["equity_labels"]:
        ax.legend()
    save(fig, "equity_r.png")

    fig, ax = plt.subplots()
    bins = [x / 4 for x in range(-8, 13)]  # -2R .. +3R in quarter-R steps; outliers clipped into the ends
    for values, label in ((s["label_rs"], "promoted signals (labels)"), (s["equity_trades"], "paper trades")):
        if values:
            ax.hist([min(max(v, bins[0]), bins[-1]) for v in values], bins=bins, alpha=0.6, label=label)
    ax.set(title="R distribution", xlabel="R", ylabel="count")
    if s["label_rs"] or s["equity_trades"]:
        ax.legend()
    save(fig, "r_distribution.png")

    fig, ax = plt.subplots()
    names = [x["setup"] for x in s["setups"]]
    values = [x["stats"]["expectancy"] or 0.0 for x in s["setups"]]
    bars = ax.bar(names, values, color=["#2a7" if v >= 0 else "#c44" for v in values])
    for bar, x in zip(bars, s["setups"], strict=True):
        win = x["stats"]["win_rate"]
        text = f"n={x['stats']['trades']}" + (f", {win:.0%} win" if win is not None else "")
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    ax.axhline(0, color="#888", linewidth=0.8)
    ax.set(title="Expectancy per setup (promoted signals, labels)", ylabel="mean R")
    save(fig, "setup_expectancy.png")

    if s["drift"]:
        fig, ax = plt.subplots()
        topics = list(s["drift"]["topics"])
        left = [0] * len(topics)
        for kind, color in (("matched", "#2a7"), ("differing", "#e90"), ("missing", "#c44"), ("extra", "#46c")):
            widths = [s["drift"]["topics"][t][kind] for t in topics]
            ax.barh(topics, widths, left=left, color=color, label=kind)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_xscale("symlog")
        ax.set(title="Drift: replay vs live, records per topic", xlabel="records (symlog)")
        ax.legend()
        save(fig, "drift.png")

    if s["realized"]["all"]["traded"]:
        fig, ax = plt.subplots(figsize=(5, 5))
        pairs = s["realized_pairs"]
        if pairs:
            ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], s=18, alpha=0.7)
            low = min(min(p) for p in pairs) - 0.2
            high = max(max(p) for p in pairs) + 0.2
            ax.plot([low, high], [low, high], color="#888", linewidth=0.8, label="realized = simulated")
            ax.legend()
        ax.set(title="Realized vs simulated R (promoted signals)", xlabel="simulated R (label)", ylabel="realized R")
        save(fig, "realized_vs_simulated.png")

    if s[FILLS]:
        titles = {"submit_latency_ms": "signal -> submit", "ack_latency_ms": "submit -> ack"}
        titles["latency_ms"] = "signal -> fill"
        latency = [k for k in titles if k in s["fill_values"]]
        fig, axes = plt.subplots(1, max(1, len(latency)), squeeze=False)
        for ax, key in zip(axes[0], latency, strict=False):
            ax.hist(s["fill_values"][key], bins=30)
            ax.set(title=titles[key], xlabel="ms", ylabel=FILLS)
        save(fig, "latency.png")
        fig, ax = plt.subplots()
        ax.hist(s["fill_values"].get("slippage_bps", []), bins=30, color="#c84")
        ax.set(title="Slippage of live fills (positive = worse)", xlabel="bps", ylabel=FILLS)
        save(fig, "slippage.png")


def write_report(
    run_path: Path,
    meta: dict[str, Any],
    outputs: dict[str, list[dict[str, Any]]],
    labels: list[dict[str, Any]],
    drift: dict[str, Any] | None,
    live_fills: list[dict[str, Any]],
    realized: list[dict[str, Any]] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write ``<run>/report/index.html`` with its PNGs and ``summary.json``; returns (page, summary)."""
    import jinja2

    out = run_path / "report"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    from .charts import sessions, write_html, write_pngs

    summary = summarize(meta, outputs, labels, drift, live_fills, realized)
    _plots(out, summary)
    charts = sessions(outputs)
    write_pngs(out / "sessions", charts)
    write_html(out / "sessions.html", charts, f"Sessions of run {meta.get('run_id')}")
    summary["charts"] = [c.name for c in charts]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals["num"] = lambda v: "-" if v is None else f"{v:+.3f}"
    env.globals["plain"] = lambda v: "-" if v is None else f"{v:,.2f}"
    env.globals["pct"] = lambda v: "-" if v is None else f"{v:.0%}"
    files = sorted(p.name for p in run_path.iterdir() if p.is_file())
    page = out / "index.html"
    page.write_text(env.from_string(TEMPLATE).render(**summary, files=files))
    hidden = ("equity_trades", "equity_labels", "label_rs", "fill_values", "realized_pairs")
    body = {k: v for k, v in summary.items() if k not in hidden}
    (out / "summary.json").write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    return page, summary
