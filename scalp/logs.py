"""JSON-lines logging to stdout and to a file under SCALP_LOG_DIR, with secrets masked."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


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
    file_name: str = "scalp.jsonl",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger: JSON lines to ``stream`` (default stdout) and to ``log_dir/file_name``."""
    formatter = JsonFormatter(_FIELDS, rename_fields={"levelname": "level", "asctime": "ts"})
    mask = SecretMask(secrets)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_dir / file_name, encoding="utf-8"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(mask)
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "httpx", "httpx2", "httpcore", "aiokafka", "faust"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
