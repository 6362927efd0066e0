"""Errors of the strategy core (it imports nothing of the other packages; the CLI maps these)."""

from __future__ import annotations


class CoreError(Exception):
    """Root of the errors the strategy core raises on purpose."""


class PolicyError(CoreError, ValueError):
    """Invalid session policy or calendar input; the CLI exits 2 with this one-line reason."""
