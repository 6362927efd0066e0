"""`scalp execute`: the order router (intents -> orders, fills, trade ledger, account snapshots)."""

from __future__ import annotations

import logging

import click

from kafkaio.errors import ConfigError

from .cliutil import guarded
from .context import Context

log = logging.getLogger("scalp.execute")


@click.command()
@click.option("--broker", type=click.Choice(["paper", "tradier"]), required=True, help="Where orders go.")
@click.option(
    "--preview",
    is_flag=True,
    help="Tradier only: send every order with preview=true (validated by the broker, never placed).",
)
@click.option(
    "--live",
    is_flag=True,
    help="Tradier only: trade real money on Tradier's production API. Without it the sandbox is used, and a "
    "production TRADIER_BASE_URL or TRADIER_STREAM_URL is refused (exit 2).",
)
@click.option(
    "--until-idle",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop once no input arrived for this long and no order is open (batch jobs, demo, tests); "
    "default: run until SIGTERM.",
)
@click.pass_context
def execute(ctx: click.Context, broker: str, preview: bool, live: bool, until_idle: float | None) -> None:
    """Place orders for order_intents and record what happens to them.

    Every intent becomes an OTOCO bracket (limit entry, take-profit limit, stop) tagged with its signal id;
    an intent whose prices cannot make a valid bracket is recorded as a rejected order with the reason.
    Publishes orders (full snapshots with status history), fills (slippage and latency), trade_ledger
    (realised PnL after fees and R) and account_snapshot. Audit events (order sent, broker reply, state
    change, unknown broker events) go to the execution_audit table without blocking the router.

    --broker paper fills against market_quotes in event time (deterministic). --broker tradier needs
    TRADIER_TOKEN and TRADIER_ACCOUNT_ID (TRADIER_BASE_URL and TRADIER_STREAM_URL point it elsewhere);
    fills come from the account events stream with GET /orders polling as the backstop. A restarted
    router resumes from what it published and never sends an intent twice.
    """

    def run() -> None:
        from connectors.execution.run import RunResult, run_paper, run_tradier
        from kafkaio.admin import TopicAdmin
        from sinks.audit import AuditWriter

        context: Context = ctx.obj
        settings = context.settings
        if preview and broker != "tradier":
            raise ConfigError("--preview is for --broker tradier")
        if live and broker != "tradier":
            raise ConfigError("--live is for --broker tradier")
        tradier = settings.tradier.for_run(live) if broker == "tradier" else settings.tradier
        if broker == "tradier":
            for var, value in (
                ("TRADIER_TOKEN", settings.tradier.token),
                ("TRADIER_ACCOUNT_ID", settings.tradier.account_id),
            ):
                if value is None or (hasattr(value, "get_secret_value") and not value.get_secret_value()):
                    raise ConfigError(f"{var} is not set (needed by --broker tradier)")
            log.warning(
                "tradier account %s, %s (%s)%s",
                tradier.account_id,
                "LIVE: real money" if tradier.live else "not live (sandbox or a local server)",
                tradier.base_url,
                ", preview only" if preview else "",
            )
        TopicAdmin(settings.kafka, context.catalog).create_all()
        ex = settings.execution
        spill = (settings.logging.dir or settings.stack.state_dir) / ex.audit_spill_file
        audit = AuditWriter.open(settings.database, spill, broker, max_queue=ex.audit_queue)
        try:
            if broker == "paper":
                result: RunResult = run_paper(settings.kafka, context.serde, ex, audit, until_idle=until_idle)
            else:
                from connectors.tradier.rest import TradierAuthError

                try:
                    result = run_tradier(
                        settings.kafka,
                        context.serde,
                        ex,
                        tradier,
                        audit,
                        preview=preview,
                        until_idle=until_idle,
                    )
                except TradierAuthError as exc:
                    raise ConfigError(str(exc)) from None
        finally:
            audit.close()
        s = result.router.stats
        click.echo(
            f"execute ({broker}): {s.intents} intents, {s.sent} sent, {s.adopted} resumed, {s.invalid} invalid, "
            f"{s.rejected} rejected, {s.fills} fills, {s.closed} trades closed, {s.time_stops} time stops, "
            f"{s.unknown_events} unknown broker events, {result.dead_letters} dead letters, "
            f"{result.outputs.skipped} already published, audit {audit.written} written / {audit.spilled} spilled"
        )

    guarded(run)()
