"""The lifecycle every long-running process follows (ingest, streams, sink, execute).

A :class:`Service` is started by calling :meth:`Service.run`, which works until :meth:`Service.stop` is
called (from a signal handler or another thread) or, where the service takes an idle limit, until it is
caught up and idle that long; before returning it flushes what it holds (producer queues, batches,
offsets) so that a stop loses nothing. :func:`run_service` runs one with SIGTERM and SIGINT wired to
``stop``. The streams worker is run by Faust's own ``Worker``, which installs the same signal handlers;
its app's ``stop()`` sends the process SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)
R_co = TypeVar("R_co", covariant=True)
R = TypeVar("R")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Service(Protocol[R_co]):
    def run(self) -> R_co:
        """Start, work until stopped (or idle), flush, and return what was done."""
        ...

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler or another thread)."""
        ...


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None], doing: str = "stopping") -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` inside the block (main thread only), logged as ``received SIGTERM:
    <doing>``; the previous handlers are put back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: %s", signal.Signals(signum).name, doing)
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_service(service: Service[R], doing: str = "stopping") -> R:
    """``service.run()`` with SIGTERM and SIGINT wired to ``service.stop()``."""
    with stop_on_signals(service.stop, doing):
        return service.run()
