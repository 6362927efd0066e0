"""CLI error handling: one line per failure, exit 2 for usage/config errors, 1 for runtime failures."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from kafkaio.errors import ConfigError, ScalpError, exit_code

F = TypeVar("F", bound=Callable[..., Any])
ET = ZoneInfo("America/New_York")


def fail(message: str, code: int) -> None:
    """One line on stderr (secrets masked: scalp.logs.REDACT), then exit with ``code``."""
    from .logs import REDACT

    click.echo(f"error: {REDACT(message)}", err=True)
    sys.exit(code)


def guarded(func: F) -> F:
    """One-line errors: ConfigError -> exit 2, other ScalpError -> exit 1, Ctrl-C -> exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ScalpError as exc:
            fail(str(exc), exit_code(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)  # 128 + SIGINT, as shells report it
        return None

    return wrapper  # type: ignore[return-value]


def metrics_port_option(section: str, default: int) -> Callable[[F], F]:
    """``--metrics-port N`` for a long-running command: /metrics and /healthz on port N (0: off), in place of
    the ``<section>.http_port`` setting, on the address ``SCALP_HTTP_HOST`` gives (default 127.0.0.1)."""

    def apply(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
        if value is None or ctx.obj is None:
            return
        settings = ctx.obj.settings
        part = getattr(settings, section).model_copy(update={"http_port": value})
        ctx.obj.settings = settings.model_copy(update={section: part})

    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        expose_value=False,
        callback=apply,
        metavar="N",
        help=f"Serve /metrics and /healthz on this port; 0: off. [default: {section}.http_port, {default}]",
    )


# event times are int64 nanoseconds since 1970 (Kafka timestamps cannot be negative)
LATEST_NS = (1 << 63) - 1


def parse_time(value: str, option: str) -> int:
    """ISO datetime (offset required unless a bare date) -> UTC ns; a bare date is 00:00 US/Eastern.
    Times before 1970 or after 2262-04-11 (past int64 nanoseconds) are refused."""
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=ET)
        else:
            moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option}: not an ISO date or datetime: {value!r}") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{option}: give a UTC offset (e.g. {value}-05:00 or {value}Z)")
    try:
        ns = int(moment.timestamp() * 1_000_000) * 1_000
    except (OverflowError, ValueError):
        ns = -1
    if not 0 <= ns <= LATEST_NS:
        raise ConfigError(f"{option}: {value} is outside 1970-01-01 .. 2262-04-11 (event times are int64 ns)")
    return ns


range_options = [
    click.option("--from", "from_", default=None, help="Start (inclusive): YYYY-MM-DD (00:00 ET) or ISO datetime."),
    click.option("--to", default=None, help="End (exclusive); default: everything after --from."),
]
runs_option = click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Directory of runs."
)


def with_options(options: list[Any]) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return wrap
