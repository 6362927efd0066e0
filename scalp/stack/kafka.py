"""Apache Kafka (KRaft, single node) from Maven Central jars, run with the machine's Java."""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from string import Template

from pydantic import SecretStr

from kafkaio import acl, clients
from kafkaio.settings import KafkaSettings
from streams.settings import StreamsSettings

from .base import ProcessService, ServiceStatus, require_tool
from .procs import ensure_port_free, spawn, wait_until
from .secure import ROLES, SecureFiles, acl_plan
from .settings import REPO_ROOT, StackSettings

STREAMS_APP = StreamsSettings().app_id  # the streams worker's Faust app (its group and state topics)

INFRA = REPO_ROOT / "infra" / "kafka"


class Kafka(ProcessService):
    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        # the secured broker keeps its own data (its users and ACLs live in its metadata log)
        super().__init__(settings, "kafka-secure" if settings.secure else "kafka")
        self.lib = settings.state_dir / "kafka" / "lib"  # the jars, shared by both
        self.data = self.home / "data"
        self.config = self.home / "server.properties"
        self.files = SecureFiles(settings.state_dir)

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.settings.kafka_port}"

    def client(self, principal: str = "admin") -> KafkaSettings:
        """The client settings of ``principal`` (secured stack), or of anyone (plain stack)."""
        if not self.settings.secure:
            return KafkaSettings(bootstrap_servers=self.bootstrap)
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=principal,
            sasl_password=SecretStr(self.files.password(principal)),
            ssl_ca_location=self.files.ca,
        )

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
        secure = self.settings.secure
        if secure:
            self.files.ensure()
        template = Template((INFRA / ("server-secure.properties" if secure else "server.properties")).read_text())
        self.config.write_text(
            template.substitute(
                host=self.settings.host,
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                broker_port=self.settings.kafka_broker_port,
                data_dir=self.data,
                bundle=self.files.bundle,
                ca=self.files.ca,
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
                    # the operator's SCRAM login exists from the start (the others are added by it)
                    *(
                        ["--add-scram", f"SCRAM-SHA-512=[name=admin,password={self.files.password('admin')}]"]
                        if secure
                        else []
                    ),
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
            quiet = self.client().model_copy(update={"properties": {"socket.timeout.ms": "2000", "log_level": "0"}})
            clients.admin(quiet).list_topics(timeout=2)
            return True
        except Exception:  # KafkaException while the broker is starting
            return False

    def start(self) -> bool:
        if self.pid() is not None and self._answers():
            self.authorize()
            return False
        ensure_port_free(self.name, self.settings.host, self.settings.kafka_port)
        ensure_port_free(self.name, self.settings.host, self.settings.kafka_controller_port)
        if self.settings.secure:
            ensure_port_free(self.name, self.settings.host, self.settings.kafka_broker_port)
        spawn([*self._java(), "kafka.Kafka", str(self.config)], self.log_file, self.pid_file, cwd=self.home)
        wait_until(self.name, self._answers, self.settings.start_timeout_s, self._alive, self.log_file)
        self.authorize()
        return True

    def authorize(self, topic_prefix: str = "") -> None:
        """Secured stack: every principal's SCRAM login and ACLs for topics named ``<prefix><topic>``
        (idempotent; run again for another prefix)."""
        if not self.settings.secure:
            return
        admin = self.client("admin")
        acl.upsert_users(admin, {p: self.files.password(p) for p in ROLES})
        acl.grant(admin, acl_plan(topic_prefix, ".dlq", STREAMS_APP))

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = pid is not None and self._answers()
        mode = ", SASL_SSL + ACLs" if self.settings.secure else ""
        return ServiceStatus(
            self.name, pid is not None, healthy, pid, self.bootstrap, f"Kafka {self._pom_version()} KRaft{mode}"
        )
