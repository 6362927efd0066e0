"""Avro values in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Encoding, and decoding a value written with the schema it is read with, go through cavro (Cython,
schemas compiled once per schema id): about 1.7x fastavro's encode and 1.8x its decode on our
records, with identical bytes (tests/unit/test_serde.py checks both libraries against each other on
every catalog schema). Decoding across schema versions (resolution to the topic's catalog schema)
goes through fastavro. confluent's per-message AvroDeserializer is about 4x slower than either
(FACTS.md 4). Records that do not match their schema raise SerializationError naming the topic and
the field; nothing is dropped silently. cavro checks types strictly: a float in a long field or a
string in a double field is an error (fastavro would coerce it).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from typing import Any

import cavro
import fastavro
from fastavro.validation import ValidationError, validate

from .catalog import Catalog, TopicSpec
from .errors import SerializationError
from .registry import Registry, subject_for
from .settings import KafkaSettings

MAGIC = 0
_HEADER = struct.Struct(">bI")
_CAVRO_OPTIONS = cavro.DEFAULT_OPTIONS.replace(record_decodes_to_dict=True)
# what a record that does not fit its schema raises while being encoded (cavro.InvalidValue is a ValueError)
_ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error, cavro.CavroException)


def wire_schema(schema: Any) -> Any:
    """``schema`` without ``timestamp-nanos`` annotations: the encoding is a plain long either way and
    fastavro returns an int either way, so the bytes and values are identical, but parsing without the
    annotation skips a per-field logical-type hook (about 10% faster encode and decode, measured here).
    The registered schema keeps the annotation."""
    if isinstance(schema, dict):
        return {k: wire_schema(v) for k, v in schema.items() if not (k == "logicalType" and v == "timestamp-nanos")}
    if isinstance(schema, list):
        return [wire_schema(v) for v in schema]
    return schema


def _first_bad_field(record: dict[str, Any], parsed: Any, spec: TopicSpec) -> str | None:
    """The name of the first field of ``record`` that does not fit the schema."""
    for field in spec.schema["fields"]:
        name = field["name"]
        if name not in record and "default" not in field:
            return str(name)
    try:
        validate(record, parsed, raise_errors=True)
    except ValidationError as exc:
        for error in exc.errors:
            # fastavro names "<namespace>.<Record>.<field>"; report "<field>" or "<NestedRecord>.<field>"
            path = str(getattr(error, "field", "") or "")
            namespace = spec.schema.get("namespace", "")
            path = path.removeprefix(f"{namespace}.").removeprefix(f"{spec.schema['name']}.")
            return str(path) or None
    return None


def _cavro_path(exc: Exception) -> str | None:
    """The field cavro names in its error ("Invalid value 3.0 for type long at size" -> "size")."""
    message = str(exc)
    at = message.rfind(" at ")
    if at < 0:
        return None
    return message[at + 4 :].strip() or None


class AvroSerde:
    """Encodes records for catalog topics and decodes any Confluent-framed Avro value."""

    def __init__(self, registry: Registry, kafka: KafkaSettings, catalog: Catalog) -> None:
        self.registry = registry
        self.kafka = kafka
        self.catalog = catalog
        self._parsed: dict[str, Any] = {}  # topic name -> parsed catalog schema (fastavro)
        self._ids: dict[str, int] = {}  # topic name -> registered schema id
        self._writers: dict[int, Any] = {}  # schema id -> parsed writer schema (fastavro)
        self._compiled: dict[int, cavro.Schema] = {}  # schema id -> writer schema (cavro)
        self._encoders: dict[str, Callable[[Any], bytes]] = {}  # topic -> cavro encode of its catalog schema
        self._headers: dict[str, bytes] = {}  # topic -> magic byte + schema id
        # (header, topic) -> (writer, reader, cavro decode function or None when resolving between versions)
        self._plans: dict[tuple[bytes, str | None], tuple[Any, Any, Any]] = {}
        self._key_fields: dict[str, str] = {}

    def parsed(self, topic: str) -> Any:
        if topic not in self._parsed:
            self._parsed[topic] = fastavro.parse_schema(wire_schema(self.catalog[topic].schema))
        return self._parsed[topic]

    def _compile(self, schema_id: int, schema: Any) -> cavro.Schema:
        compiled = self._compiled.get(schema_id)
        if compiled is None:
            compiled = self._compiled[schema_id] = cavro.Schema(wire_schema(schema), options=_CAVRO_OPTIONS)
        return compiled

    def ensure_registered(self, topic: str) -> int:
        """Register the catalog schema of ``topic`` (idempotent) and set its compatibility level."""
        if topic not in self._ids:
            spec = self.catalog[topic]
            subject = subject_for(self.kafka.topic(topic))
            schema_id = self.registry.register(subject, spec.schema_str)
            self.registry.set_compatibility(subject)
            self._ids[topic] = schema_id
            self._writers[schema_id] = self.parsed(topic)
            self._encoders[topic] = self._compile(schema_id, spec.schema).binary_encode
        return self._ids[topic]

    def encode(self, topic: str, record: dict[str, Any]) -> bytes:
        header = self._headers.get(topic)
        if header is None:
            header = self._headers[topic] = _HEADER.pack(MAGIC, self.ensure_registered(topic))
        try:
            return header + self._encoders[topic](record)
        except _ENCODE_ERRORS as exc:
            field = _first_bad_field(record, self._parsed[topic], self.catalog[topic]) or _cavro_path(exc)
            raise SerializationError(
                topic, field, f"record does not match {self.catalog[topic].schema_file}: {type(exc).__name__}: {exc}"
            ) from None

    def key(self, topic: str, record: dict[str, Any]) -> bytes:
        field = self._key_fields.get(topic)
        if field is None:
            field = self._key_fields[topic] = self.catalog[topic].key
        value = record[field]
        if type(value) is str:
            return value.encode()
        return self.catalog[topic].key_of(record).encode()

    def schema_id(self, data: bytes, topic: str = "?") -> int:
        if len(data) < 5:
            raise SerializationError(topic, None, f"value of {len(data)} bytes is too short for the wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise SerializationError(topic, None, f"unknown magic byte {magic} (not Confluent-framed Avro)")
        return int(schema_id)

    def _writer(self, schema_id: int) -> Any:
        parsed = self._writers.get(schema_id)
        if parsed is None:
            schema = json.loads(self.registry.schema_str(schema_id))
            parsed = fastavro.parse_schema(wire_schema(schema))
            self._compile(schema_id, schema)
            self._writers[schema_id] = parsed
        return parsed

    def _plan(self, header: bytes, topic: str | None) -> tuple[Any, Any, Any]:
        """(writer, reader, cavro decode) for a 5-byte header on ``topic``; cached, so the hot path is one
        dict lookup. Values written with the schema they are read with decode through cavro; values of
        another version are resolved to the topic's catalog schema by fastavro."""
        schema_id = self.schema_id(header, topic or "?")
        writer = self._writer(schema_id)
        reader = None
        if topic is not None:
            same = self._ids.get(topic) == schema_id or writer == self.parsed(topic)
            reader = None if same else self.parsed(topic)
        if reader is not None:
            return writer, reader, None
        return writer, None, self._compiled[schema_id].binary_decode  # compiled with the writer, by _writer

    def resolves_to_itself(self, header: bytes, topic: str) -> bool:
        """True when values with this 5-byte header were written with ``topic``'s own catalog schema
        (decoded without resolving between schema versions); False when unknown or another schema."""
        plan = self._plans.get((header, topic))
        return plan is not None and plan[1] is None

    def knows(self, data: bytes, topic: str | None = None) -> bool:
        """True when decoding ``data`` needs no registry lookup (its schema id was seen for ``topic``)."""
        return (data[:5], topic) in self._plans

    def decode_known(self, data: bytes, topic: str) -> dict[str, Any] | None:
        """:meth:`decode` when it needs no registry lookup (the schema id was seen for ``topic``); else None."""
        plan = self._plans.get((data[:5], topic))
        return None if plan is None else self._decode(data, topic, plan)

    def decode(self, data: bytes, topic: str | None = None) -> dict[str, Any]:
        """Decode a framed value. With ``topic`` the result is resolved to that topic's catalog schema."""
        key = (data[:5], topic)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(data[:5], topic)
        return self._decode(data, topic, plan)

    def _decode(self, data: bytes, topic: str | None, plan: tuple[Any, Any, Any]) -> dict[str, Any]:
        try:
            fast = plan[2]
            if fast is not None:
                record = fast(data[5:])
            else:
                record = fastavro.schemaless_reader(io.BytesIO(data[5:]), plan[0], plan[1])
        except Exception as exc:
            raise SerializationError(
                topic or "?", None, f"cannot decode with schema id {self.schema_id(data)}: {type(exc).__name__}: {exc}"
            ) from None
        if type(record) is not dict:
            raise SerializationError(topic or "?", None, f"schema id {self.schema_id(data)} is not a record schema")
        return record
