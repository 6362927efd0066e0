"""Config snapshots: the content behind every digest stamped on outputs, so a digest in a feature row, a
signal or a run can be turned back into the configuration that produced it.

Three kinds, each a text whose sha256 is its digest (a snapshot proves itself): ``policy`` (the validated
session policy as canonical JSON: ``session_policy_digest``), ``settings`` (the non-secret settings as
canonical JSON: ``env_hash``; it names the trade-condition table by the sha256 of its content) and
``conditions`` (that table's file, verbatim). The streams worker publishes the ones the topic lacks when it
starts (``config_snapshots``, compacted, keyed by digest; the sink keeps the first row per digest); replay
runs keep theirs in the run directory (``configs.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafkaio.errors import ConfigError
from kafkaio.producer import AvroProducer
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import CONFIG_SNAPSHOTS

log = logging.getLogger(__name__)
KINDS = ("policy", "settings", "conditions")
RUN_FILE = "configs.json"  # a replay run's snapshots, in its directory


class SnapshotError(ConfigError):
    """A snapshot whose body does not hash to its digest, or a digest nothing holds."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    digest: str
    kind: str
    body: str

    @classmethod
    def of(cls, kind: str, body: str) -> Snapshot:
        if kind not in KINDS:
            raise ValueError(f"unknown snapshot kind {kind!r} (known: {', '.join(KINDS)})")
        return cls(hashlib.sha256(body.encode()).hexdigest(), kind, body)

    def checked(self, where: str) -> Snapshot:
        """This snapshot, once its body is seen to hash to its digest (else SnapshotError naming ``where``)."""
        if hashlib.sha256(self.body.encode()).hexdigest() != self.digest:
            raise SnapshotError(f"config snapshot {self.digest[:16]} from {where}: its body does not hash to it")
        return self

    def record(self, ts_ns: int) -> dict[str, Any]:
        return {"digest": self.digest, "ts": ts_ns, "kind": self.kind, "body": self.body}

    def pretty(self) -> str:
        """The body for people: JSON indented (policy, settings), the conditions file as it is."""
        if self.kind == "conditions":
            return self.body
        return json.dumps(json.loads(self.body), indent=2, sort_keys=True)


def conditions_snapshot(path: Path) -> Snapshot:
    """The trade-condition table's file (its bytes as UTF-8: the settings digest hashes the bytes)."""
    try:
        return Snapshot.of("conditions", path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the trade-condition table {path}: {exc}") from None


def worker_snapshots(policy_canonical: str, settings_body: str, conditions_file: Path) -> list[Snapshot]:
    """What a worker or a run runs with: its policy, its settings and their trade-condition table."""
    return [
        Snapshot.of("policy", policy_canonical),
        Snapshot.of("settings", settings_body),
        conditions_snapshot(conditions_file),
    ]


def read_topic(kafka: KafkaSettings, serde: AvroSerde, timeout_s: float = 30.0) -> Iterator[Snapshot]:
    """Every snapshot on the topic (checked; a record that fails its check is logged and skipped)."""
    physical = kafka.topic(CONFIG_SNAPSHOTS)
    with RangeReader(kafka, f"scalp-reader-{physical}", timeout_s) as reader:
        for raw in reader.read(physical, reader.bounds(physical)):
            if raw.value is None:
                continue
            record = serde.decode(raw.value, CONFIG_SNAPSHOTS)
            try:
                yield Snapshot(record["digest"], record["kind"], record["body"]).checked(physical)
            except SnapshotError as exc:
                log.warning("%s (offset %d): skipped", exc, raw.offset)


def publish_new(kafka: KafkaSettings, serde: AvroSerde, snapshots: Iterable[Snapshot], ts_ns: int) -> list[Snapshot]:
    """Publish the snapshots the topic does not hold yet (flushed before this returns); returns them.

    Two workers starting together may both publish one: the table keeps the first (its key is the digest)
    and compaction keeps the last on the topic; the content is the same."""
    wanted = {s.digest: s for s in snapshots}
    held = {s.digest for s in read_topic(kafka, serde)}
    new = [s for d, s in wanted.items() if d not in held]
    if new:
        producer = AvroProducer(kafka, serde)
        for snapshot in new:
            producer.produce(CONFIG_SNAPSHOTS, snapshot.record(ts_ns))
        producer.flush(30)
    return new


def write_run_file(directory: Path, snapshots: Iterable[Snapshot]) -> Path:
    path = directory / RUN_FILE
    body = {s.digest: {"kind": s.kind, "body": s.body} for s in snapshots}
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    return path


def read_run_file(path: Path) -> list[Snapshot]:
    try:
        data = json.loads(path.read_text())
        return [Snapshot(d, v["kind"], v["body"]).checked(str(path)) for d, v in data.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"{path}: not a config snapshot file ({exc})") from None
