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
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

_FIELDS = "%(asctime)s %(levelname)s %(service)s %(process)d %(name)s %(message)s"


class ServiceField(logging.Filter):
    """Adds ``service`` (the command that runs: sink, streams, ingest, execute, demo, ...) to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


class SecretMask(logging.Filter):
    """Replaces every known secret value in a record's message and args with ``***``.

    Code must never log secrets in the first place; this is the second guard.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


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
    mask = SecretMask(secrets)
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
