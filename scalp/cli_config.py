"""`scalp config`: the configuration behind a digest, and the digests of this configuration."""

from __future__ import annotations

from pathlib import Path

import click

from .cliutil import guarded, runs_option
from .context import Context


@click.group()
def config() -> None:
    """Digests and the configurations behind them (config_snapshots)."""


@config.command("show")
@click.argument("digest")
@click.option("--raw", is_flag=True, help="The body exactly as stored (canonical JSON), without indentation.")
@runs_option
@click.pass_context
def config_show(ctx: click.Context, digest: str, raw: bool, out: Path) -> None:
    """Print the policy, settings or trade-condition table whose sha256 is DIGEST (or begins with it: 8 hex
    digits or more), as stamped on features, signals and decisions (session_policy_digest, env_hash) and in
    run.json. Looks in the runs under --out (configs.json), then the config_snapshots table, then the
    config_snapshots topic; the body is checked against the digest. The kind and where it was found go to
    stderr, the body to stdout (so `scalp config show D > policy.json` gives a file `--policy` reads)."""

    def run() -> None:
        from backtest.configs import resolve

        context: Context = ctx.obj
        notes: list[str] = []
        try:
            snapshot, where = resolve(context.research(), out, digest, notes)
        finally:
            for note in notes:
                click.echo(f"note: {note}", err=True)
        click.echo(f"{snapshot.kind} {snapshot.digest} (from {where})", err=True)
        click.echo(snapshot.body if raw else snapshot.pretty())

    guarded(run)()


@config.command("digests")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None, help="Session policy file.")
@click.pass_context
def config_digests(ctx: click.Context, policy_path: Path | None) -> None:
    """The digests this configuration stamps: session policy, settings (env_hash), trade-condition table."""

    def run() -> None:
        from backtest.workflow import load_policy_file
        from streams.snapshots import worker_snapshots

        context: Context = ctx.obj
        research = context.research()
        policy = load_policy_file(research, policy_path)
        for snapshot in worker_snapshots(policy.canonical(), research.settings_snapshot, research.conditions_file):
            click.echo(f"{snapshot.kind:<10} {snapshot.digest}")

    guarded(run)()
