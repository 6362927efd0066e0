"""The lock that lets test workers share the stack: shared tests overlap, an exclusive test runs alone, and a
waiting exclusive test is not overtaken by shared tests that start after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.sharing import turn


def holder(path: Path, exclusive: bool, log: list[str], name: str) -> tuple[threading.Thread, Callable[[], None]]:
    """A thread that takes its turn, logs when it got it, and holds it until released."""
    release = threading.Event()

    def run() -> None:
        with turn(exclusive, path):
            log.append(f"{name} in")
            release.wait(10)
            log.append(f"{name} out")  # still holding it

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, release.set


def settle() -> None:
    time.sleep(0.3)  # before checking that a thread did NOT get its turn: time enough to have taken it


def until(log: list[str], expected: list[str]) -> None:
    deadline = time.monotonic() + 10
    while log != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log == expected


def test_shared_tests_overlap(tmp_path: Path) -> None:
    log: list[str] = []
    path = tmp_path / "t.lock"
    a, free_a = holder(path, False, log, "a")
    until(log, ["a in"])
    b, free_b = holder(path, False, log, "b")
    until(log, ["a in", "b in"])
    free_a(), free_b()
    a.join(5), b.join(5)


def test_an_exclusive_test_waits_for_the_running_ones_and_new_ones_wait_for_it(tmp_path: Path) -> None:
    log: list[str] = []
    path = tmp_path / "t.lock"
    a, free_a = holder(path, False, log, "a")
    until(log, ["a in"])
    x, free_x = holder(path, True, log, "x")
    settle()
    b, free_b = holder(path, False, log, "b")  # starts after x asked: waits for x
    settle()
    assert log == ["a in"]
    free_a()
    until(log, ["a in", "a out", "x in"])
    settle()
    assert log == ["a in", "a out", "x in"]  # x alone, b still waiting
    free_x()
    until(log, ["a in", "a out", "x in", "x out", "b in"])
    free_b()
    for thread in (a, x, b):
        thread.join(5)
    assert log[-1] == "b out"
