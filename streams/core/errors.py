"""Errors of the strategy core, under the project's error root (a module that imports nothing)."""

from __future__ import annotations

from kafkaio.errors import ConfigError, ScalpError


class CoreError(ScalpError):
    """Root of the errors the strategy core raises on purpose."""


class PolicyError(CoreError, ConfigError, ValueError):
    """Invalid session policy or calendar input; the CLI exits 2 with this one-line reason."""
