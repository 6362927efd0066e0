"""Which build of the hot path is running: compiled (mypyc) or pure Python.

The modules below are the per-event hot path of the strategy core, the order router and the replay engine.
``SCALP_COMPILE=1 pip wheel .`` (the image does this) compiles them to C extensions with mypyc; without it
the wheel is pure Python. Both run the same source and give the same outputs, byte for byte (the test suite
runs the strategy's tests and a replay against a compiled copy). This module imports nothing heavy:
``setup.py`` reads the list from it, and ``scalp --version`` reports the build.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

COMPILED_MODULES = (
    "streams.core.conditions",
    "streams.core.merge",
    "streams.core.sessions",
    "streams.core.features",
    "streams.core.setups",
    "streams.core.risk",
    "streams.core.pipeline",
    "execution.tracker",
    "execution.paper",
    "execution.router",
    "backtest.replay",
)


def compiled_modules() -> list[str]:
    """The hot-path modules this interpreter would load as compiled extensions (none in a pure build)."""
    found = []
    for name in COMPILED_MODULES:
        spec = find_spec(name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(tuple(EXTENSION_SUFFIXES)):
            found.append(name)
    return found


def describe() -> str:
    n = len(compiled_modules())
    if n == 0:
        return "pure Python"
    return f"compiled with mypyc: {n} of {len(COMPILED_MODULES)} hot-path modules"
