"""The contract every local service follows: prepare, start, stop, status."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kafkaio.errors import ServiceError

from .procs import read_pid, stop_pid
from .settings import StackSettings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    detail: str = ""


class Service(Protocol):
    name: str

    def prepare(self) -> None:
        """Check prerequisites and fetch or initialise what the service needs (cached)."""

    def start(self) -> bool:
        """Start and wait until it answers. False if it was already running (no-op)."""

    def stop(self) -> bool:
        """Stop it. False if it was not running."""

    def status(self) -> ServiceStatus: ...


def require_tool(tool: str, hint: str) -> str:
    """Path of ``tool`` on PATH, or a one-line ServiceError naming the package to install."""
    path = shutil.which(tool)
    if path is None:
        raise ServiceError(f"{tool} not found; {hint}")
    return path


class ProcessService:
    """Shared pid-file handling for services started as one detached process."""

    name = "service"

    def __init__(self, settings: StackSettings, subdir: str) -> None:
        self.settings = settings
        self.home: Path = settings.state_dir / subdir
        self.pid_file = self.home / "service.pid"
        self.log_file = self.home / "service.log"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        stop_pid(pid, self.settings.stop_timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _alive(self) -> bool:
        return self.pid() is not None

    def _fail(self, message: str) -> ServiceError:
        return ServiceError(f"{self.name}: {message}")
