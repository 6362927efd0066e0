"""`scalp deploy`: the pipeline's long-running processes under supervisord, on a host without Docker.

``write`` renders a supervisord configuration into a directory of its own (``<state dir>/deploy`` by
default): one program each for ingest (Polygon, or a synthetic session), streams, sink and execute, each with
its own log file (rotated), restarted when it dies. ``start`` runs supervisord (daemonised, its socket in that
directory), ``status`` and ``stop`` talk to it through supervisorctl.

What the programs get: the command line of the same ``scalp`` that wrote the configuration, the settings
file, and the environment supervisord was started with (so secrets such as TRADIER_TOKEN stay in the
environment and never reach the configuration file). Exit codes 0 and 2 are expected: a finished synthetic
session, or a usage or configuration error, is not restarted in a loop; anything else is (supervisord
retries a program that dies during its first ``startsecs`` up to ``startretries`` times, waiting one second
longer each time, then marks it FATAL).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kafkaio.errors import ConfigError, ServiceError

PROGRAMS = ("ingest", "streams", "sink", "execute")


@dataclass(frozen=True)
class Plan:
    directory: Path
    config: Path | None  # the settings file the programs use (None: the default resolution)
    feed: str = "polygon"  # polygon, or synthetic (a session of --date)
    date: str | None = None
    start: str | None = None
    end: str | None = None
    speed: float | None = None
    symbols: str = "SPY,QQQ"
    broker: str = "paper"
    programs: tuple[str, ...] = PROGRAMS

    def commands(self) -> dict[str, list[str]]:
        base = [str(Path(sys.executable).with_name("scalp"))]
        if self.config is not None:
            base += ["--config", str(self.config.resolve())]
        if self.feed == "synthetic":
            if not self.date:
                raise ConfigError("--feed synthetic needs --date")
            ingest = [*base, "ingest", "synthetic", "--date", self.date, "--symbols", self.symbols]
            ingest += ["--start", self.start] if self.start else []
            ingest += ["--end", self.end] if self.end else []
            ingest += ["--speed", str(self.speed)] if self.speed else []
        elif self.feed == "polygon":
            ingest = [*base, "ingest", "polygon", "--symbols", self.symbols]
        else:
            raise ConfigError(f"--feed must be polygon or synthetic, got {self.feed!r}")
        every = {
            "ingest": ingest,
            "streams": [*base, "streams"],
            "sink": [*base, "sink", "--topics", "all"],
            "execute": [*base, "execute", "--broker", self.broker],
        }
        unknown = set(self.programs) - set(every)
        if unknown:
            raise ConfigError(f"unknown programs {sorted(unknown)}: choose from {', '.join(PROGRAMS)}")
        return {name: every[name] for name in self.programs}


def render(plan: Plan) -> str:
    d = plan.directory.resolve()
    lines = [
        "; written by `scalp deploy write`; rewrite it rather than editing it",
        "[unix_http_server]",
        f"file={d / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={d / 'supervisord.log'}",
        f"pidfile={d / 'supervisord.pid'}",
        f"childlogdir={d / 'logs'}",
        "logfile_maxbytes=10MB",
        "logfile_backups=3",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{d / 'supervisor.sock'}",
        "",
    ]
    for name, argv in plan.commands().items():
        lines += [
            f"[program:{name}]",
            f"command={shlex.join(argv)}",
            f"directory={d}",
            "autostart=true",
            "autorestart=unexpected",
            "exitcodes=0,2",
            "startsecs=5",
            "startretries=10",
            "stopsignal=TERM",
            "stopwaitsecs=60",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={d / 'logs' / (name + '.log')}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=5",
            # the program's own JSON log file is the supervisor's log of its stdout: no second copy
            'environment=SCALP_LOG_FILE="false"',
            "",
        ]
    return "\n".join(lines)


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.conf = directory / "supervisord.conf"

    def write(self, plan: Plan) -> Path:
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render(plan), encoding="utf-8")
        return self.conf

    def _bin(self, name: str) -> str:
        return str(Path(sys.executable).with_name(name))

    def _require_conf(self) -> None:
        if not self.conf.exists():
            raise ConfigError(f"{self.conf} does not exist: run `scalp deploy write` first")

    def start(self) -> None:
        """Start supervisord (it daemonises; the programs start with it)."""
        self._require_conf()
        if self.running():
            raise ConfigError(f"supervisord already runs for {self.directory} (scalp deploy status / stop)")
        proc = subprocess.run([self._bin("supervisord"), "-c", str(self.conf)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"supervisord did not start: {(proc.stderr or proc.stdout).strip()[:500]}")

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        self._require_conf()
        return subprocess.run(
            [self._bin("supervisorctl"), "-c", str(self.conf), *args], capture_output=True, text=True, check=False
        )

    def running(self) -> bool:
        pid_file = self.directory / "supervisord.pid"
        if not pid_file.exists():
            return False
        return self.ctl("pid").returncode == 0

    def status(self) -> dict[str, tuple[str, int | None]]:
        """program -> (state, pid)."""
        out = self.ctl("status").stdout
        states: dict[str, tuple[str, int | None]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                states[parts[0]] = (parts[1], pid)
        return states

    def stop(self) -> None:
        """Stop every program (SIGTERM, then SIGKILL after stopwaitsecs) and supervisord."""
        if not self.running():
            return
        proc = self.ctl("shutdown")
        if proc.returncode != 0:
            raise ServiceError(f"supervisorctl shutdown failed: {(proc.stderr or proc.stdout).strip()[:500]}")
