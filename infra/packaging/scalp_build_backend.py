"""PEP 517 build backend: setuptools', plus mypy among the build requirements when ``SCALP_COMPILE=1`` asks
for the compiled build (setup.py). The mypy version is the one the project's type checks use."""

from __future__ import annotations

import os
from typing import Any

from setuptools.build_meta import *  # noqa: F403 (every hook setuptools provides, unchanged)

MYPYC = ["mypy==2.4.1"]


def _compiled() -> list[str]:
    return MYPYC if os.environ.get("SCALP_COMPILE", "0") == "1" else []


# what setuptools' own hooks return for this project (it has no setup_requires), without running setup.py:
# that needs mypy, which is what is being asked for here
def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return ["wheel", *_compiled()]


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return ["wheel", *_compiled()]
