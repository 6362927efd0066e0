"""Tests that run side by side (pytest-xdist workers, `./run test` runs two) share one Kafka, registry and
PostgreSQL. Most tests keep to their own topics (a prefix) and databases, so they can overlap; a test marked
``exclusive`` stops or restarts a shared service, or asserts a wall-clock bound that a busy machine would
break, and runs while no other test does.

A readers-writer lock on a file, taken around each test's whole protocol (its fixtures' setup and teardown
included, module- and session-scoped ones too): every other test holds it shared; an exclusive test holds it
alone. A gate in front gives a waiting exclusive test its turn: tests that start after it wait at the gate
until it has run, so a stream of shared tests on the other worker cannot keep it waiting forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# machine-wide: the local stack's services and ports are, and so two test runs at once share them too
LOCK = Path(tempfile.gettempdir()) / f"scalp-tests-{os.getuid()}.lock"


@contextlib.contextmanager
def turn(exclusive: bool, path: Path = LOCK) -> Iterator[None]:
    gate_path = path.with_name(path.name + ".gate")
    with open(gate_path, "a") as gate, open(path, "a") as room:
        if exclusive:
            fcntl.flock(gate, fcntl.LOCK_EX)  # tests starting from now on wait here
            try:
                fcntl.flock(room, fcntl.LOCK_EX)  # until the running ones have finished
                try:
                    yield
                finally:
                    fcntl.flock(room, fcntl.LOCK_UN)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            try:
                fcntl.flock(room, fcntl.LOCK_SH)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(room, fcntl.LOCK_UN)
