"""The build: setuptools with pyproject.toml. ``SCALP_COMPILE=1`` compiles the hot-path modules listed in
scalp/build.py with mypyc (mypy's compiler; a C compiler is needed). Without it the wheel is pure Python."""

import os
import runpy
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def hot_path() -> list[str]:
    modules = runpy.run_path(str(HERE / "scalp" / "build.py"))["COMPILED_MODULES"]
    return [name.replace(".", "/") + ".py" for name in modules]


def extensions() -> list:
    if os.environ.get("SCALP_COMPILE", "0") != "1":
        return []
    from mypyc.build import mypycify

    # mypy runs here on its own settings, not pyproject's (strict, with the pydantic plugin): the build
    # environment holds only the build tools, so third-party types are unknown (Any) and their errors in
    # modules that are not compiled are not reported
    options = ["--config-file=", "--python-version=3.11", "--ignore-missing-imports", "--follow-imports=silent"]
    return mypycify([*options, *hot_path()], opt_level="3")


setup(ext_modules=extensions())
