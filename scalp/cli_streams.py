"""`scalp streams`: the Faust worker (features, setups, risk)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from kafkaio.errors import ConfigError

from .cliutil import guarded
from .context import Context

log = logging.getLogger("scalp.streams")


@click.command()
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
    help="Stop once no input arrived for this long and every market partition is read to its end (batch "
    "jobs, demo, tests); a stall stops it after 30 s, with a warning. Default: run until SIGTERM.",
)
@click.pass_context
def streams(ctx: click.Context, policy_path: Path | None, until_idle: float | None) -> None:
    """Compute features, setup signals and risk decisions from the market topics (Faust worker).

    Consumes market_trades and market_quotes (keyed by symbol: run more workers to share partitions) and
    trade_ledger; produces features, signals, risk_decisions, order_intents and risk_day. State is kept in
    Faust tables with changelog topics, so a restarted worker resumes with the same state. SIGTERM or
    SIGINT stop it cleanly. /metrics and /healthz on streams.http_port (default 9465; 0 disables).
    """

    def run() -> None:
        import faust

        from kafkaio.admin import TopicAdmin
        from streams.app import RESTART_ENV, Streams
        from streams.core.digests import Digests, source_commit
        from streams.core.errors import PolicyError
        from streams.core.pipeline import CoreParts
        from streams.core.policy import load_policy

        context: Context = ctx.obj
        settings = context.settings
        try:
            policy = load_policy(policy_path or settings.streams.policy_file)
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
        digests = Digests(source_commit(), policy.digest, settings.digest())
        log.info(
            "policy %s (digest %s), settings digest %s, source %s",
            policy_path or settings.streams.policy_file,
            policy.digest[:12],
            digests.env_hash[:12],
            digests.source_commit,
        )
        TopicAdmin(settings.kafka, context.catalog).create_all()
        app = Streams(
            settings.kafka,
            settings.streams,
            context.serde,
            context.catalog,
            CoreParts.create(policy, digests),
            data_dir=settings.stack.state_dir / "faust",
        )
        app.idle_exit_s = until_idle
        server = None
        if settings.streams.http_port:
            from sinks.metrics import serve
            from streams.metrics import StreamsMetrics

            def health() -> tuple[bool, dict[str, object]]:
                return True, {"status": "ok", "events": app.stats.events, "held": app.stage.held()}

            server = serve(StreamsMetrics(app), health, settings.streams.http_host, settings.streams.http_port)  # type: ignore[arg-type]
        worker = faust.Worker(app.app, loglevel=settings.logging.level, override_logging=False, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            if server is not None:
                server.shutdown()
        stats = app.stats
        elapsed = stats.last_activity - stats.started if stats.started else 0.0
        rate = f" ({stats.events / elapsed:,.0f}/s)" if elapsed > 0 else ""
        counters = app.stage.counters().values()
        late = sum(c.late_events for c in counters)
        outside = sum(c.outside_session for c in counters)
        click.echo(
            f"streams: {stats.events} events in{rate}, outputs {dict(sorted(stats.outputs.items()))}, "
            f"{stats.skipped} skipped as already in state, {stats.redelivered} redelivered, "
            f"{stats.dead_letters} dead letters, {stats.idle_releases} idle releases, "
            f"{late} late and {outside} outside-session events not applied, "
            f"{stats.stale} left to another worker at a rebalance, "
            f"{stats.ahead} handed out ahead of their partition's position ({stats.filled} skipped inputs read "
            f"directly, {stats.seeks} seeks back), "
            f"{stats.risk_refetched} risk inputs read directly past a hole"
        )
        if app.restart_reason is not None and app.restart_env is not None:
            # a fresh process starts at the committed offsets (see Streams._out_of_sequence)
            log.warning("starting again: %s", app.restart_reason)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execve(  # noqa: S606 (the same interpreter and arguments, no shell)
                sys.executable,
                [sys.executable, "-m", "scalp.cli", *sys.argv[1:]],
                {**os.environ, RESTART_ENV: app.restart_env},
            )

    guarded(run)()
