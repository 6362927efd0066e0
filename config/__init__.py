"""The default configuration files: ``pipeline.yaml`` (settings), ``session_policies.yaml`` (features,
setups, risk) and ``trade_conditions.yaml`` (Polygon's trade-condition rules).

In a checkout this is the ``config/`` folder; an installed scalp carries the same files as the package
``scalp_config`` (package data), so it runs from any directory. :func:`default` names one of them: a file of
that name in the folder of ``$SCALP_CONFIG`` (the settings file in use) takes precedence over the packaged
one, so a deployment keeps its own policy and condition table next to its settings.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default(name: str) -> Path:
    """``name`` next to ``$SCALP_CONFIG`` when it is there, else the packaged default."""
    settings = os.environ.get("SCALP_CONFIG")
    if settings:
        beside = Path(settings).resolve().parent / name
        if beside.is_file():
            return beside
    return HERE / name


def packaged(name: str) -> Path:
    """The packaged default ``name`` (never an override)."""
    return HERE / name
