"""`scalp execute`: the order router (intents -> orders, fills, trade ledger, account snapshots)."""

from __future__ import annotations

import logging
from typing import Any

import click

from kafkaio.errors import ConfigError

from .cliutil import guarded, metrics_port_option
from .context import Context

log = logging.getLogger("scalp.execute")


@click.command()
@metrics_port_option("execution", 9466)
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
@click.option(
    "--status",
    is_flag=True,
    help="Show the account's trading state, its open orders and positions (from the recorded topics) and "
    "who holds its lease, then exit; nothing is traded.",
)
@click.pass_context
def execute(ctx: click.Context, broker: str, preview: bool, live: bool, until_idle: float | None, status: bool) -> None:
    """Place orders for order_intents and record what happens to them.

    Every intent becomes an OTOCO bracket (limit entry, take-profit limit, stop) tagged with its signal id;
    an intent whose prices cannot make a valid bracket is recorded as a refused order with the reason.
    Publishes orders (full snapshots with status history), fills (slippage and latency), trade_ledger
    (realised PnL after fees and R) and account_snapshot. Audit events (order sent, broker reply, state
    change, unknown broker events) go to the execution_audit table without blocking the router.

    --broker paper fills against market_quotes in event time (deterministic). --broker tradier needs
    TRADIER_TOKEN and TRADIER_ACCOUNT_ID (TRADIER_BASE_URL and TRADIER_STREAM_URL point it elsewhere);
    fills come from the account events stream with GET /orders polling as the backstop. A restarted
    router resumes from what it published and never sends an intent twice: every order is recorded as
    `sending` before it goes out and looked up at the broker after a restart.

    Before any entry goes out it passes the trading state (scalp halt / reduce / flatten / resume) and the
    pre-trade limits of execution.limits (quantity, notional, orders per day, open positions, symbols,
    intent age, submits per second, the end-of-day cutoff); a refusal is an orders record with status
    `refused` naming the limit. Only one router runs per account: a second one exits 2 naming the holder.
    """

    def run() -> None:
        from connectors.execution.common import RunResult
        from connectors.execution.control import PAPER_ACCOUNT
        from connectors.execution.lease import AccountLease, lease_name
        from connectors.execution.run import run_paper
        from connectors.execution.tradier import run_tradier
        from kafkaio.admin import TopicAdmin
        from sinks.audit import AuditWriter

        context: Context = ctx.obj
        settings = context.settings
        if preview and broker != "tradier":
            raise ConfigError("--preview is for --broker tradier")
        if live and broker != "tradier":
            raise ConfigError("--live is for --broker tradier")
        tradier = settings.tradier.for_run(live) if broker == "tradier" else settings.tradier
        account = PAPER_ACCOUNT if broker == "paper" else (settings.tradier.account_id or "")
        if status:
            show_status(context, broker, account)
            return
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
        router_db = settings.database.role("router")
        lease = AccountLease(router_db.dsn, lease_name(settings.kafka.topic_prefix, broker, account),
                             ex.lease_keepalive_s)  # fmt: skip
        lease.acquire()  # one router per account (exit 2 naming the holder)
        spill = (settings.logging.dir or settings.stack.state_dir) / ex.audit_spill_file
        audit = AuditWriter.open(settings.database.role("router"), spill, broker, max_queue=ex.audit_queue)
        beat = Heartbeat(account)
        server = beat.serve(ex.http_host, ex.http_port) if ex.http_port else None
        try:
            if broker == "paper":
                result: RunResult = run_paper(
                    settings.kafka, context.serde, ex, audit, until_idle=until_idle, lease_check=lease.check,
                    progress=beat,
                )  # fmt: skip
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
                        lease_check=lease.check,
                        progress=beat,
                    )
                except TradierAuthError as exc:
                    raise ConfigError(str(exc)) from None
        finally:
            if server is not None:
                server.shutdown()
            audit.close()
            lease.release()
        s = result.router.stats
        state = result.router.guard.change.describe() if result.router.guard else "active"
        click.echo(
            f"execute ({broker}): {s.intents} intents, {s.sent} sent, {s.adopted} resumed, {s.invalid} invalid, "
            f"{s.refused} refused, "
            f"{s.rejected} rejected, {s.fills} fills, {s.closed} trades closed, {s.time_stops} time stops, "
            f"{s.unknown_events} unknown broker events, {result.dead_letters} dead letters, "
            f"{result.outputs.skipped} already published, audit {audit.written} written / {audit.spilled} spilled; "
            f"trading state {state}"
        )

    guarded(run)()


class Heartbeat:
    """The router's loop reports here on every pass (``progress``); /healthz says whether it still turns."""

    def __init__(self, account: str) -> None:
        import time

        self.account = account
        self.result: Any = None
        self.last = time.monotonic()
        self.observe: Any = None

    def __call__(self, result: Any) -> None:
        import time

        self.result, self.last = result, time.monotonic()
        if self.observe is not None and result.router.stats.observe is None:
            result.router.stats.observe = self.observe  # the delays, from the loop's first pass

    def health(self) -> tuple[bool, dict[str, Any]]:
        import time

        age = time.monotonic() - self.last
        router = self.result.router if self.result is not None else None
        detail: dict[str, Any] = {"account": self.account, "loop_age_s": round(age, 1)}
        if router is not None:
            detail["trading_state"] = router.guard.change.describe() if router.guard else "active"
            detail["intents"], detail["sent"] = router.stats.intents, router.stats.sent
            detail["open_trades"] = len(router.open_trades())
        return age < 15.0, detail

    def serve(self, host: str, port: int) -> Any:
        from connectors.execution.metrics import ExecuteMetrics

        metrics = ExecuteMetrics(self)
        self.observe = metrics.observe
        return metrics.serve(self.health, host, port)


def show_status(context: Context, broker: str, account: str) -> None:
    """`scalp execute --status`: state, open orders, positions, lease holder."""
    from connectors.execution.common import Published
    from connectors.execution.control import current_state
    from connectors.execution.lease import AccountLease, LeaseHeld, lease_name
    from execution.model import TERMINAL
    from kafkaio.reader import read_topic
    from schemas.topics import ACCOUNT_SNAPSHOT

    settings = context.settings
    if not account:
        raise ConfigError("TRADIER_ACCOUNT_ID is not set (needed by --broker tradier)")
    change, n = current_state(settings.kafka, context.serde, account)
    click.echo(f"account {account} ({broker}): trading state {change.describe()} ({n} control records)")
    published = Published.read(settings.kafka, context.serde)
    open_orders = [
        o for o in published.orders.values()
        if o["broker"] == broker and o["status"] not in TERMINAL and not o["preview"]
    ]  # fmt: skip
    click.echo(f"open orders: {len(open_orders)}")
    for o in sorted(open_orders, key=lambda o: o["ts"]):
        click.echo(f"  {o['id']}  {o['status']:<9} {o['side']} {o['qty']} {o['symbol']} ({o['order_class']}) "
                   f"broker id {o['broker_order_id'] or '-'}")  # fmt: skip
    snapshots = [s for s in read_topic(settings.kafka, context.serde, ACCOUNT_SNAPSHOT) if s["account_id"] == account]
    if snapshots:
        last = max(snapshots, key=lambda s: s["ts"])
        click.echo(f"positions (account_snapshot at {last['ts']}): {len(last['positions'])}")
        for p in last["positions"]:
            click.echo(f"  {p['symbol']} {p['qty']} cost {p['cost_basis']}")
    else:
        click.echo("positions: no account_snapshot recorded")
    lease = AccountLease(settings.database.role("router").dsn, lease_name(settings.kafka.topic_prefix, broker, account))
    try:
        lease.acquire()
        click.echo("router: none running (the lease is free)")
    except LeaseHeld as exc:
        click.echo(f"router: running ({str(exc).split(': ', 1)[1].split(';')[0]})")
    finally:
        lease.release()


def _control(command: str, doc: str) -> click.Command:
    @click.option("--account", default="*", show_default=True,
                  help="The broker account (TRADIER_ACCOUNT_ID, or PAPER); '*' addresses every router.")  # fmt: skip
    @click.option("--reason", default=None, help="Why (recorded with the command).")
    @click.pass_context
    def cmd(ctx: click.Context, account: str, reason: str | None) -> None:
        def run() -> None:
            from connectors.execution.common import operator
            from connectors.execution.control import publish
            from kafkaio.admin import TopicAdmin

            context: Context = ctx.obj
            TopicAdmin(context.settings.kafka, context.catalog).create_all()
            record = publish(context.settings.kafka, context.serde, account, command, reason, operator())
            click.echo(f"{command} published for account {record['account_id']} ({record['id']})")

        guarded(run)()

    cmd.__doc__ = doc
    return click.command(command)(cmd)


halt = _control(
    "halt",
    """Halt trading: routers refuse every new entry (within a second) and cancel brackets whose entry has not
    filled; filled positions keep their take-profit, stop and time stop, and exits still go out. The state
    is kept in the execution_control topic, so it survives restarts until `scalp resume`.""",
)
resume = _control("resume", """Resume trading (state active): entries are sent again, within the limits.""")
reduce = _control(
    "reduce",
    """Reduce only: no new entry; working brackets stay and exits go out. `scalp resume` ends it.""",
)
flatten = _control(
    "flatten",
    """Flatten: cancel every open bracket, close every open position with a market order, then halt.""",
)
