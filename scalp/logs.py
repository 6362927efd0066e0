"""JSON-lines event logs: to stdout and to a rotated file per service (``<log dir>/<service>.jsonl``), every
line naming its ``service`` and process, with secrets masked.

Long-running services (sink, streams, ingest, execute) log at the configured level on stdout. Interactive
commands print tables and summaries on stdout, so their log lines there are WARNING and above unless a level
was asked for (``--log-level`` or ``SCALP_LOG_LEVEL``); their file gets the configured level either way.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from kafkaio.redact import Redactor

_FIELDS = "%(asctime)s %(levelname)s %(service)s %(process)d %(name)s %(message)s"


class ServiceField(logging.Filter):
    """Adds ``service`` (the command that runs: sink, streams, ingest, execute, demo, ...) to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


# the secrets of this process, masked in every log line and CLI error (kafkaio.redact)
REDACT = Redactor()


class SecretMask(logging.Filter):
    """Masks secrets (known values, and credentials by their form: kafkaio.redact) in a record's message,
    its exception and traceback, and its stack. Code must never log secrets in the first place; this is the
    second guard."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            record.exc_text = self.redact(_PLAIN.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_PLAIN = logging.Formatter()


class RepeatLimit(logging.Filter):
    """Lets through one record of a message that starts with ``prefix`` per ``every`` seconds; the next one let
    through says how many were held back since. Faust warns "producer buffer full" each time more than 100
    table changelog messages wait for Kafka, which in a burst is many times a second (about 6,100 lines in an
    hour of a 200-symbol session on one worker): ordinary backpressure that drowned every other warning."""

    def __init__(self, prefix: str, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix, self.every, self.clock = prefix, every, clock
        self.last: float | None = None
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.prefix):
            return True
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            self.held += 1
            return False
        if self.held and self.last is not None:
            record.msg, record.args = (
                f"{message} ({self.held} more like it in the {now - self.last:.0f} s before)",
                None,
            )
        self.last, self.held = now, 0
        return True


# loggers whose repeating warnings are let through once a minute: logger name -> message prefix
REPEATING = {"faust.transport.producer": "producer buffer full"}


def masked_excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook: an uncaught exception's traceback, with secrets masked, on stderr."""
    text = "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(REDACT(text))


def setup_logging(
    level: str = "INFO",
    log_dir: Path | None = None,
    file_name: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    service: str = "scalp",
    stream_level: str | None = None,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 5,
) -> None:
    """Configure the root logger: JSON lines to ``stream`` (default stdout; at ``stream_level`` when given)
    and, with ``log_dir``, to ``log_dir/<file_name or service.jsonl>``, rotated at ``max_bytes``."""
    formatter = JsonFormatter(_FIELDS, rename_fields={"levelname": "level", "asctime": "ts", "process": "pid"})
    REDACT.add(secrets)
    mask = SecretMask(REDACT)
    sys.excepthook = masked_excepthook
    tag = ServiceField(service)
    console = logging.StreamHandler(stream or sys.stdout)
    if stream_level is not None:
        console.setLevel(stream_level.upper())
    handlers: list[logging.Handler] = [console]
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / (file_name or f"{service}.jsonl")
            handlers.append(
                logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
            )
        except OSError as exc:  # an unwritable log dir must not stop the process: stdout still has everything
            print(f"warning: no log file in {log_dir}: {exc}", file=sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(tag)
        handler.addFilter(mask)
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "httpx", "httpx2", "httpcore", "aiokafka", "faust"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name, prefix in REPEATING.items():
        logger = logging.getLogger(name)
        for old_filter in [f for f in logger.filters if isinstance(f, RepeatLimit)]:
            logger.removeFilter(old_filter)
        logger.addFilter(RepeatLimit(prefix))
