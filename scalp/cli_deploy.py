"""`scalp deploy`: the pipeline's processes under supervisord (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import click

from .cliutil import guarded
from .context import Context


def _dir(ctx: click.Context, directory: Path | None) -> Path:
    context: Context = ctx.obj
    return (directory or context.settings.stack.state_dir / "deploy").resolve()


_DIR = click.option(
    "--dir", "directory", type=click.Path(path_type=Path), default=None,
    help="Where the supervisord configuration, socket and logs live (default: <state dir>/deploy).",
)  # fmt: skip


@click.group()
def deploy() -> None:
    """Run ingest, streams, sink and execute under supervisord: restarted when they die, a log file each.

    scalp deploy write, then scalp deploy start; scalp deploy status shows each program's state and pid;
    scalp deploy stop stops them all (SIGTERM, clean shutdown) and supervisord. The programs inherit the
    environment of `scalp deploy start` (secrets stay there, never in the configuration file).
    """


@deploy.command("write")
@_DIR
@click.option("--feed", type=click.Choice(["polygon", "synthetic"]), default="polygon", show_default=True)
@click.option("--date", default=None, help="Synthetic feed: the session date (YYYY-MM-DD).")
@click.option("--start", default=None, help="Synthetic feed: window start HH:MM US/Eastern.")
@click.option("--end", default=None, help="Synthetic feed: window end HH:MM US/Eastern.")
@click.option(
    "--speed", type=float, default=None, help="Synthetic feed: times real time (default: as fast as it goes)."
)
@click.option("--symbols", default="SPY,QQQ", show_default=True)
@click.option("--broker", type=click.Choice(["paper", "tradier"]), default="paper", show_default=True)
@click.option(
    "--programs", default=",".join(("ingest", "streams", "sink", "execute")), show_default=True,
    help="Which programs to supervise.",
)  # fmt: skip
@click.pass_context
def deploy_write(
    ctx: click.Context, directory: Path | None, feed: str, date: str | None, start: str | None, end: str | None,
    speed: float | None, symbols: str, broker: str, programs: str,
) -> None:  # fmt: skip
    """Write the supervisord configuration (programs use this command's settings file)."""

    def run() -> None:
        from .deploy import Plan, Supervisor

        config = ctx.parent.parent.params.get("config_path") if ctx.parent and ctx.parent.parent else None
        plan = Plan(
            _dir(ctx, directory), config, feed, date, start, end, speed, symbols, broker,
            tuple(p.strip() for p in programs.split(",") if p.strip()),
        )  # fmt: skip
        path = Supervisor(plan.directory).write(plan)
        click.echo(f"deploy: {path} ({', '.join(plan.programs)}); start it with `scalp deploy start`")

    guarded(run)()


@deploy.command("start")
@_DIR
@click.pass_context
def deploy_start(ctx: click.Context, directory: Path | None) -> None:
    """Start supervisord and its programs."""

    def run() -> None:
        from .deploy import Supervisor

        sup = Supervisor(_dir(ctx, directory))
        sup.start()
        click.echo(f"deploy: supervisord started ({sup.conf})")

    guarded(run)()


@deploy.command("status")
@_DIR
@click.pass_context
def deploy_status(ctx: click.Context, directory: Path | None) -> None:
    """Each program's state and pid; exit 1 unless every program runs (or finished as expected)."""

    def run() -> None:
        import sys

        from .deploy import Supervisor

        sup = Supervisor(_dir(ctx, directory))
        if not sup.running():
            click.echo("deploy: supervisord is not running")
            sys.exit(1)
        states = sup.status()
        for name, (state, pid) in sorted(states.items()):
            click.echo(f"{name:<10} {state:<10} {pid or '-'}")
        if any(state not in ("RUNNING", "EXITED") for state, _ in states.values()):
            sys.exit(1)

    guarded(run)()


@deploy.command("stop")
@_DIR
@click.pass_context
def deploy_stop(ctx: click.Context, directory: Path | None) -> None:
    """Stop every program (SIGTERM: each stops cleanly) and supervisord."""

    def run() -> None:
        from .deploy import Supervisor

        Supervisor(_dir(ctx, directory)).stop()
        click.echo("deploy: stopped")

    guarded(run)()
