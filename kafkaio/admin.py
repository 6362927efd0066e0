"""Topic administration from the catalog: create (idempotent) and list with end offsets."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from schemas.catalog import Catalog

from . import clients
from .errors import ConfigError, RetryableError
from .reader import RangeReader
from .settings import KafkaSettings

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
EXPIRY_MARGIN_MS = 3_600_000  # records Kafka would delete within this time of being written are refused


def _longer(a: int, b: int) -> int:
    """The longer of two retention.ms values (-1 is forever)."""
    return -1 if -1 in (a, b) else max(a, b)


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
        self.admin = clients.admin(kafka)

    def wanted(self, with_dlq: bool = True) -> dict[str, tuple[int, dict[str, str]]]:
        """Physical topic name -> (partitions, configs) for every catalog topic (and DLQ)."""
        out: dict[str, tuple[int, dict[str, str]]] = {}
        for spec in self.catalog:
            extra = self.kafka.topic_configs()
            out[self.kafka.topic(spec.name)] = (spec.partitions, self._retention({**spec.kafka_configs(), **extra}))
            if with_dlq:
                dlq = self.catalog.dlq
                out[self.kafka.topic(spec.dlq)] = (dlq.partitions, self._retention({**dlq.kafka_configs(), **extra}))
        return out

    def _retention(self, configs: dict[str, str]) -> dict[str, str]:
        """The catalog's topic configs with ``retention.ms`` raised to ``kafka.min_retention_ms`` when set."""
        floor = self.kafka.min_retention_ms
        current = configs.get("retention.ms")
        if floor is None or current is None:
            return configs
        return {**configs, "retention.ms": str(_longer(int(current), floor))}

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
        replicas = self.kafka.replication_factor
        todo = [NewTopic(n, p, replicas, config=c) for n, (p, c) in wanted.items() if n not in existing]
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
            current_configs = self.configs(present, timeout_s)
            kept: list[str] = []
            raised: dict[str, int] = {}
            resources = []
            for name in present:
                configs = dict(wanted[name][1])
                now = current_configs.get(name, {})
                if "retention.ms" in configs and "retention.ms" in now:
                    current = int(now["retention.ms"])
                    longer = _longer(current, int(configs["retention.ms"]))
                    if longer != int(configs["retention.ms"]):
                        kept.append(f"{name}={longer}")
                    if longer != current:
                        raised[name] = longer
                    configs["retention.ms"] = str(longer)
                # only what differs is altered: a topic as the catalog wants it needs no ALTER_CONFIGS right
                changed = {k: v for k, v in configs.items() if now.get(k) != v}
                if changed:
                    entries = [
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in changed.items()
                    ]
                    resources.append(ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries))
            if kept:
                # lowering a retention deletes what the longer one kept (history written under a floor):
                # never done behind the user's back
                log.info("topics keep their longer retention.ms (lower it by hand if wanted): %s", ", ".join(kept))
            altered = self.admin.incremental_alter_configs(resources).items() if resources else ()
            for resource, future in altered:
                try:
                    future.result()
                except KafkaException as exc:
                    raise RetryableError(f"updating configs of {resource.name} failed: {exc}") from exc
            self._wait_for_retention(raised, timeout_s)
        return result

    def _wait_for_retention(self, wanted: dict[str, int], timeout_s: float) -> None:
        """An altered config reaches the broker's answers a moment after the alter call returns; wait, so
        what runs next (check_kept, a writer of history) sees the new retention."""
        deadline = time.monotonic() + timeout_s
        while wanted:
            seen = self.retention_ms(wanted, timeout_s)
            wanted = {name: value for name, value in wanted.items() if seen.get(name) != value}
            if not wanted:
                return
            if time.monotonic() > deadline:
                raise RetryableError(f"retention.ms not applied after {timeout_s:.0f}s: {', '.join(wanted)}")
            time.sleep(0.1)

    def configs(self, names: Iterable[str], timeout_s: float = 30.0) -> dict[str, dict[str, str]]:
        """The broker's configs of existing topics (physical names): name -> key -> value."""
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        out: dict[str, dict[str, str]] = {}
        if not resources:
            return out
        for resource, future in self.admin.describe_configs(resources, request_timeout=timeout_s).items():
            try:
                entries = future.result()
            except KafkaException as exc:
                raise RetryableError(f"reading the configs of {resource.name} failed: {exc}") from exc
            out[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
        return out

    def retention_ms(self, names: Iterable[str], timeout_s: float = 30.0) -> dict[str, int]:
        """The broker's ``retention.ms`` of existing topics (physical names)."""
        return {n: int(c["retention.ms"]) for n, c in self.configs(names, timeout_s).items() if "retention.ms" in c}

    def check_kept(self, topics: Iterable[str], oldest_ns: int, now_ns: int, what: str) -> None:
        """Refuse to write records of venue time ``oldest_ns`` to catalog ``topics`` that would delete them
        within the hour: Kafka's retention counts from the record timestamp, which is the event time, so
        history older than a topic's retention vanishes minutes after it is written. ``now_ns`` is the
        wall clock (retention runs on the broker's clock, not on event time)."""
        physical = {self.kafka.topic(t): t for t in topics}
        short = []
        for name, retention in sorted(self.retention_ms(physical).items()):
            if retention != -1 and oldest_ns // 1_000_000 + retention < now_ns // 1_000_000 + EXPIRY_MARGIN_MS:
                short.append((name, retention))
        if not short:
            return
        needed_days = math.ceil((now_ns - oldest_ns) / 1e6 / DAY_MS) + 1
        start = dt.datetime.fromtimestamp(oldest_ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        kept = ", ".join(f"{t} keeps {r / DAY_MS:g} days" for t, r in short)
        raise ConfigError(
            f"{what} starts at {start}, but {kept} (retention.ms, counted from the records' venue time): "
            f"Kafka would delete them within the hour of writing. Set SCALP_MIN_RETENTION_MS=-1 (keep forever) "
            f"or at least {needed_days * DAY_MS} ({needed_days} days) and run again; topic retention is raised "
            f"at startup and never lowered automatically"
        )

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
        infos: list[TopicInfo] = []
        with RangeReader(self.kafka, "scalp-topics-list", timeout_s) as reader:
            for name in sorted(existing):
                if name.startswith("__"):
                    continue
                ends: list[int] = []
                total = 0
                for p in range(existing[name]):
                    low, high = reader.watermarks(name, p)
                    ends.append(high)
                    total += high - low
                infos.append(TopicInfo(name, existing[name], total, tuple(ends)))
        return infos
