"""`scalp streams`: the Faust worker (features, setups, risk)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .cliutil import guarded, metrics_port_option
from .context import Context

log = logging.getLogger("scalp.streams")


@click.command()
@metrics_port_option("streams", 9465)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Session policy file (default: streams.policy_file, config/session_policies.yaml).",
)
@click.option(
    "--until-idle",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop once no input arrived for this long and every market, ledger, order and risk input partition "
    "is read to its end (batch jobs, demo, tests); a stall stops it after 30 s, with a warning. Default: run "
    "until SIGTERM.",
)
@click.pass_context
def streams(ctx: click.Context, policy_path: Path | None, until_idle: float | None) -> None:
    """Compute features, setup signals and risk decisions from the market topics (Faust worker).

    Consumes market_trades and market_quotes (keyed by symbol: run more workers to share partitions) and
    trade_ledger; produces features, signals, risk_decisions, order_intents and risk_day. State is kept in
    Faust tables with changelog topics, so a restarted worker resumes with the same state. SIGTERM or
    SIGINT stop it cleanly. /metrics and /healthz on streams.http_port (default 9465;
    --metrics-port overrides it; 0 disables).
    """

    def run() -> None:
        from streams.core.conditions import ConditionTable
        from streams.core.digests import Digests, source_commit
        from streams.core.pipeline import CoreParts
        from streams.core.policy import load_policy
        from streams.service import restart_if_asked, run_worker
        from streams.snapshots import worker_snapshots

        context: Context = ctx.obj
        settings = context.settings
        policy = load_policy(policy_path or settings.streams.policy_file)  # PolicyError: exit 2
        conditions = ConditionTable.load(settings.streams.conditions_file)  # PolicyError: exit 2
        digests = Digests(source_commit(), policy.digest, settings.digest())
        log.info(
            "policy %s (digest %s), settings digest %s, source %s",
            policy_path or settings.streams.policy_file,
            policy.digest[:12],
            digests.env_hash[:12],
            digests.source_commit,
        )
        app = run_worker(
            settings.kafka,
            settings.streams,
            context.serde,
            context.catalog,
            CoreParts.create(policy, digests, conditions),
            data_dir=settings.stack.state_dir / "faust",
            until_idle=until_idle,
            log_level=settings.logging.level,
            snapshots=worker_snapshots(policy.canonical(), settings.snapshot(), settings.streams.conditions_file),
        )
        stats = app.stats
        elapsed = stats.last_activity - stats.started if stats.started else 0.0
        rate = f" ({stats.events / elapsed:,.0f}/s)" if elapsed > 0 else ""
        counters = app.stage.counters().values()
        late = sum(c.late_events for c in counters)
        outside = sum(c.outside_session for c in counters)
        click.echo(
            f"streams: {stats.events} events in{rate}, outputs {dict(sorted(stats.outputs.items()))}, "
            f"{stats.skipped} skipped as already in state, {stats.redelivered} redelivered, "
            f"{stats.dead_letters} dead letters, {stats.idle_drains} drains at the end of input, "
            f"{late} late and {outside} outside-session events not applied, "
            f"{stats.stale} left to another worker at a rebalance, "
            f"{stats.ahead} handed out ahead of their partition's position ({stats.filled} skipped inputs read "
            f"directly, {stats.seeks} seeks back), "
            f"{stats.risk_refetched} risk inputs read directly past a hole"
        )
        restart_if_asked(app, [sys.executable, "-m", "scalp.cli", *sys.argv[1:]])

    guarded(run)()
