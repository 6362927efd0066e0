"""Apicurio Registry (Quarkus distribution from Maven Central) with SQL storage on our PostgreSQL.

Storage is persistent, so schema ids survive restarts. Clients use the Confluent-compatible API at
/apis/ccompat/v7.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import requests

from .base import ProcessService, ServiceStatus, require_tool
from .procs import ensure_port_free, spawn, wait_until
from .secure import SecureFiles
from .settings import StackSettings

ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"


class Registry(ProcessService):
    name = "registry"

    def __init__(self, settings: StackSettings, jdbc_url: str, db_user: str, db_password: str = "") -> None:
        super().__init__(settings, "registry")
        self.dist = self.home / f"dist-{settings.registry_version}"
        self.jdbc_url = jdbc_url
        self.db_user = db_user
        self.db_password = db_password  # passed in the environment, never on the command line

    @property
    def base_url(self) -> str:
        scheme = "https" if self.settings.secure else "http"
        return f"{scheme}://{self.settings.host}:{self.settings.registry_port}"

    @property
    def mode_file(self) -> Path:
        return self.home / "service.mode"  # "secure" or "plain": how the running registry was started

    def running_mode(self) -> str | None:
        if self.pid() is None:
            return None
        return self.mode_file.read_text().strip() if self.mode_file.exists() else "plain"

    @property
    def ccompat_url(self) -> str:
        return f"{self.base_url}/apis/ccompat/v7"

    def prepare(self) -> None:
        require_tool("java", "install openjdk-17-jre-headless")
        if self._runner() is not None:
            return
        mvn = require_tool("mvn", "install maven (needed once to fetch Apicurio Registry)")
        download = self.home / "download"
        download.mkdir(parents=True, exist_ok=True)
        artifact = ARTIFACT.format(version=self.settings.registry_version)
        proc = subprocess.run(
            [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={download}"],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.home,
        )
        if proc.returncode != 0:
            raise self._fail(f"fetching {artifact} with Maven failed:\n{proc.stdout[-2000:]}")
        archive = next(download.glob("apicurio-registry-app-*-all.tar.gz"))
        staging = self.home / "staging"
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(self.dist)
        archive.unlink()

    def _java(self) -> list[str]:
        props = {
            "quarkus.http.host": self.settings.host,
            "quarkus.http.port": str(self.settings.registry_port),
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "postgresql",
            "apicurio.datasource.url": self.jdbc_url,
            "apicurio.datasource.username": self.db_user,
            "apicurio.datasource.jdbc.initial-size": "2",
            "apicurio.datasource.jdbc.min-size": "2",
            "apicurio.datasource.jdbc.max-size": "10",
            "apicurio.rest.deletion.artifact.enabled": "true",
            "apicurio.rest.deletion.artifact-version.enabled": "true",
            "quarkus.log.level": "WARN",
        }
        if self.settings.secure:  # TLS only, on the same port, with the stack's certificate
            files = SecureFiles(self.settings.state_dir)
            props.update(
                {
                    "quarkus.http.ssl-port": str(self.settings.registry_port),
                    "quarkus.http.port": "0",
                    "quarkus.http.insecure-requests": "disabled",
                    "quarkus.http.ssl.certificate.files": str(files.cert),
                    "quarkus.http.ssl.certificate.key-files": str(files.key),
                }
            )
        return [
            "java",
            f"-Xmx{self.settings.registry_heap}",
            *(f"-D{k}={v}" for k, v in props.items()),
            "-jar",
            str(self._runner()),
        ]

    def _runner(self) -> Path | None:
        """The launcher jar: quarkus-run.jar (fast-jar, 3.1+) or *-runner.jar (3.0.x)."""
        for pattern in ("quarkus-run.jar", "*-runner.jar"):
            found = sorted(self.dist.glob(pattern))
            if found:
                return found[0]
        return None

    def _answers(self) -> bool:
        verify: str | bool = str(SecureFiles(self.settings.state_dir).ca) if self.settings.secure else True
        try:
            resp = requests.get(f"{self.ccompat_url}/subjects", timeout=2, verify=verify)
            return resp.status_code == 200
        except requests.RequestException:
            return False

    def start(self) -> bool:
        if self.pid() is not None:
            # ours and alive: answering, or catching up after its database restarted (a flavour change)
            wait_until(self.name, self._answers, self.settings.start_timeout_s, self._alive, self.log_file)
            return False
        ensure_port_free(self.name, self.settings.host, self.settings.registry_port)
        env = {**os.environ, "APICURIO_DATASOURCE_PASSWORD": self.db_password}
        spawn(self._java(), self.log_file, self.pid_file, cwd=self.home, env=env)
        self.mode_file.write_text("secure" if self.settings.secure else "plain")
        wait_until(self.name, self._answers, self.settings.start_timeout_s, self._alive, self.log_file)
        return True

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = pid is not None and self._answers()
        return ServiceStatus(
            self.name,
            pid is not None,
            healthy,
            pid,
            self.ccompat_url,
            f"Apicurio {self.settings.registry_version}, SQL storage",
        )
