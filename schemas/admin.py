"""Topic administration from the catalog: create (idempotent) and list with end offsets."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from .catalog import Catalog
from .errors import ConfigError, RetryableError
from .settings import KafkaSettings


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    messages: int  # sum over partitions of (high watermark - low watermark)
    end_offsets: tuple[int, ...]


class TopicAdmin:
    def __init__(self, kafka: KafkaSettings, catalog: Catalog) -> None:
        self.kafka = kafka
        self.catalog = catalog
        self.admin = AdminClient({**kafka.client_config()})

    def wanted(self, with_dlq: bool = True) -> dict[str, tuple[int, dict[str, str]]]:
        """Physical topic name -> (partitions, configs) for every catalog topic (and DLQ)."""
        out: dict[str, tuple[int, dict[str, str]]] = {}
        for spec in self.catalog:
            out[self.kafka.topic(spec.name)] = (spec.partitions, self._retention(spec.kafka_configs()))
            if with_dlq:
                dlq = self.catalog.dlq
                out[self.kafka.topic(spec.dlq)] = (dlq.partitions, self._retention(dlq.kafka_configs()))
        return out

    def _retention(self, configs: dict[str, str]) -> dict[str, str]:
        """The catalog's topic configs with ``retention.ms`` raised to ``kafka.min_retention_ms`` when set."""
        floor = self.kafka.min_retention_ms
        current = configs.get("retention.ms")
        if floor is None or current is None or current == "-1":
            return configs
        raised = -1 if floor == -1 else max(int(current), floor)
        return {**configs, "retention.ms": str(raised)}

    def create_all(self, with_dlq: bool = True, timeout_s: float = 30.0) -> dict[str, bool]:
        """Create missing topics and reconcile the configs of existing ones; name -> created now.

        A topic whose partition count differs from the catalog is an error: keyed consumers (Faust
        tables and their changelogs) depend on it.
        """
        wanted = self.wanted(with_dlq)
        existing = self._existing(timeout_s)
        for name, (partitions, _) in wanted.items():
            if name in existing and existing[name] != partitions:
                raise ConfigError(
                    f"topic {name} has {existing[name]} partitions but the catalog says {partitions}; "
                    f"recreate it (data loss) or change schemas/topics.yaml"
                )
        todo = [NewTopic(n, p, 1, config=c) for n, (p, c) in wanted.items() if n not in existing]
        result = {name: False for name in wanted}
        if todo:
            futures = self.admin.create_topics(todo, operation_timeout=timeout_s, request_timeout=timeout_s)
            for name, future in futures.items():
                try:
                    future.result()
                    result[name] = True
                except KafkaException as exc:
                    if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                        raise RetryableError(f"creating topic {name} failed: {exc}") from exc
            self._wait_for_leaders([t.topic for t in todo], timeout_s)
        present = [n for n in wanted if n in existing]
        if present:
            resources = [
                ConfigResource(
                    ResourceType.TOPIC,
                    name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                        for k, v in wanted[name][1].items()
                    ],
                )
                for name in present
            ]
            for resource, future in self.admin.incremental_alter_configs(resources).items():
                try:
                    future.result()
                except KafkaException as exc:
                    raise RetryableError(f"updating configs of {resource.name} failed: {exc}") from exc
        return result

    def _wait_for_leaders(self, names: list[str], timeout_s: float) -> None:
        """New topics are usable once every partition has a leader; wait for that."""
        deadline = time.monotonic() + timeout_s
        while True:
            meta = self.admin.list_topics(timeout=timeout_s)
            waiting = [
                name
                for name in names
                if name not in meta.topics
                or meta.topics[name].error is not None
                or any(p.leader < 0 or p.error is not None for p in meta.topics[name].partitions.values())
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RetryableError(f"topics without a leader after {timeout_s:.0f}s: {', '.join(waiting[:5])}")
            time.sleep(0.1)

    def delete_prefixed(self, prefix: str, timeout_s: float = 60.0) -> list[str]:
        """Delete every topic whose name starts with ``prefix`` (scratch topics of tests and benchmarks)."""
        if not prefix:
            raise ConfigError("refusing to delete topics without a prefix")
        names = [n for n in self._existing(timeout_s) if n.startswith(prefix)]
        if names:
            for future in self.admin.delete_topics(names, operation_timeout=timeout_s).values():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                        raise RetryableError(f"deleting topics with prefix {prefix}: {exc}") from exc
        return names

    def _existing(self, timeout_s: float) -> dict[str, int]:
        try:
            meta = self.admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise RetryableError(f"Kafka at {self.kafka.bootstrap_servers} unreachable: {exc}") from exc
        return {name: len(t.partitions) for name, t in meta.topics.items()}

    def list(self, timeout_s: float = 10.0) -> list[TopicInfo]:
        existing = self._existing(timeout_s)
        consumer = Consumer(
            {**self.kafka.client_config(), "group.id": "scalp-topics-list", "enable.auto.commit": False}
        )
        infos: list[TopicInfo] = []
        try:
            for name in sorted(existing):
                if name.startswith("__"):
                    continue
                ends: list[int] = []
                total = 0
                for p in range(existing[name]):
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)
                    ends.append(high)
                    total += high - low
                infos.append(TopicInfo(name, existing[name], total, tuple(ends)))
        finally:
            consumer.close()
        return infos
