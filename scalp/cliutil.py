"""CLI error handling: one line per failure, exit 2 for usage/config errors, 1 for runtime failures."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from kafkaio.errors import ScalpError, exit_code

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def guarded(func: F) -> F:
    """One-line errors: ConfigError -> exit 2, other ScalpError -> exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ScalpError as exc:
            fail(str(exc), exit_code(exc))
        except KeyboardInterrupt:
            fail("interrupted", 1)
        return None

    return wrapper  # type: ignore[return-value]
