"""Process plumbing for the local stack: pid files, detached starts, graceful stops, port owners."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from kafkaio.errors import ServiceError


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is still alive, not a zombie, and ours: the pid file holds the
    process's start time too, and a process of that pid started at another time is a stranger that reused
    the pid of one that died (a pid file of the old form, the pid alone, is ours if the process runs in the
    pid file's folder, as every service is started). Else None: nothing is ever signalled on a stale pid."""
    try:
        fields = pid_file.read_text().split()
        pid = int(fields[0])
        started = float(fields[1]) if len(fields) > 1 else None
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if started is not None:
            return pid if abs(proc.create_time() - started) < 0.5 else None
        return pid if Path(proc.cwd()) == pid_file.parent.resolve() else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_process_of(pid: int, program: str, marker: str) -> bool:
    """Whether ``pid`` runs ``program`` with ``marker`` (a path of ours) on its command line."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return bool(cmdline) and Path(cmdline[0]).name == program and marker in cmdline


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str | None:
    """'name (pid N)' of the process listening on ``port``, when this user may see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
                return f"pid {conn.pid}"
    return None


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free now on 127.0.0.1 (for processes started next: tests, benchmarks)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ensure_port_free(service: str, host: str, port: int) -> None:
    if port_in_use(host, port):
        owner = port_owner(port)
        who = f" by {owner}" if owner else " by another process"
        raise ServiceError(f"{service}: port {host}:{port} is already taken{who}; stop it or change the port")


def spawn(
    argv: Sequence[str], log_file: Path, pid_file: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> int:
    """Start ``argv`` detached (own session), output appended to ``log_file``, pid written to ``pid_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid} {psutil.Process(proc.pid).create_time()}\n")
    return proc.pid


def stop_pid(pid: int, timeout_s: float) -> bool:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL. True if it stopped gracefully."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout_s)
        return True
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            os.kill(pid, signal.SIGKILL)
            psutil.Process(pid).wait(timeout=10)
        return False


def wait_until(
    service: str, probe: Callable[[], bool], timeout_s: float, alive: Callable[[], bool], log_file: Path
) -> None:
    """Poll ``probe`` until it answers True; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        if not alive():
            raise ServiceError(f"{service}: exited during start-up; see {log_file}\n{tail(log_file)}")
        time.sleep(0.5)
    raise ServiceError(f"{service}: did not answer within {timeout_s:.0f}s; see {log_file}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
