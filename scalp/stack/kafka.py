"""Apache Kafka (KRaft, single node) from Maven Central jars, run with the machine's Java."""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from string import Template

from confluent_kafka.admin import AdminClient

from .base import ProcessService, ServiceStatus, require_tool
from .procs import ensure_port_free, spawn, wait_until
from .settings import REPO_ROOT, StackSettings

INFRA = REPO_ROOT / "infra" / "kafka"


class Kafka(ProcessService):
    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings, "kafka")
        self.lib = self.home / "lib"
        self.data = self.home / "data"
        self.config = self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.settings.kafka_port}"

    def _pom_version(self) -> str:
        match = re.search(r"<kafka.version>([^<]+)</kafka.version>", (INFRA / "pom.xml").read_text())
        if match is None:
            raise self._fail("infra/kafka/pom.xml has no kafka.version property")
        return match.group(1)

    def prepare(self) -> None:
        require_tool("java", "install openjdk-17-jre-headless")
        version = self._pom_version()
        if not (self.lib / f"kafka_2.13-{version}.jar").exists():
            mvn = require_tool("mvn", "install maven (needed once to fetch the Kafka jars)")
            if self.lib.exists():
                for old in self.lib.glob("*.jar"):
                    old.unlink()
            self.lib.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(INFRA / "pom.xml"),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={self.lib}",
                    "-DincludeScope=runtime",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise self._fail(f"fetching Kafka {version} jars with Maven failed:\n{proc.stdout[-2000:]}")
        self.data.mkdir(parents=True, exist_ok=True)
        template = Template((INFRA / "server.properties").read_text())
        self.config.write_text(
            template.substitute(
                host=self.settings.host,
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data_dir=self.data,
            )
        )
        cluster_file = self.home / "cluster.id"
        if not cluster_file.exists():
            cluster_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        if not (self.data / "meta.properties").exists():
            proc = subprocess.run(
                [
                    *self._java(),
                    "kafka.tools.StorageTool",
                    "format",
                    # "=" form: a base64url id may start with "-", which argparse would take for an option
                    f"--cluster-id={cluster_file.read_text().strip()}",
                    "--config",
                    str(self.config),
                    "--ignore-formatted",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise self._fail(f"formatting the KRaft log dir failed: {proc.stderr or proc.stdout}")

    def _java(self) -> list[str]:
        return [
            "java",
            f"-Xmx{self.settings.kafka_heap}",
            f"-Xms{self.settings.kafka_heap}",
            f"-Dlog4j2.configurationFile=file:{INFRA / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{self.lib}/*",
        ]

    def _answers(self) -> bool:
        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
            admin.list_topics(timeout=2)
            return True
        except Exception:  # KafkaException while the broker is starting
            return False

    def start(self) -> bool:
        if self.pid() is not None and self._answers():
            return False
        ensure_port_free(self.name, self.settings.host, self.settings.kafka_port)
        ensure_port_free(self.name, self.settings.host, self.settings.kafka_controller_port)
        spawn([*self._java(), "kafka.Kafka", str(self.config)], self.log_file, self.pid_file, cwd=self.home)
        wait_until(self.name, self._answers, self.settings.start_timeout_s, self._alive, self.log_file)
        return True

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = pid is not None and self._answers()
        return ServiceStatus(
            self.name, pid is not None, healthy, pid, self.bootstrap, f"Kafka {self._pom_version()} KRaft"
        )
