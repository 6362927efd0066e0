"""The default configuration files: ``pipeline.yaml`` (settings), ``session_policies.yaml`` (features,
setups, risk) and ``trade_conditions.yaml`` (Polygon's trade-condition rules).

In a checkout this is the ``config/`` folder; an installed scalp carries the same files as the package
``scalp_config`` (package data), so it runs from any directory. :func:`default` names one of them.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def default(name: str) -> Path:
    """The packaged default ``name`` (e.g. ``session_policies.yaml``)."""
    return HERE / name
