"""The sink's fast path: a batch of one topic's Avro values decoded at once and written as COPY CSV.

Confluent framing is a 5-byte header plus one Avro binary datum. The datums of a batch that share the
topic's current schema are concatenated into one in-memory Avro object container file (the schema in the
header, one data block, no codec: the bytes are the datums themselves) and read by polars' Avro reader
into columns; the columns are rendered as CSV (polars) and sent with ``COPY ... (FORMAT CSV)``, which the
server parses on its own core. Per row that is about 0.8 us of client work instead of about 7 us for
fastavro's decode, the row builder and psycopg's binary COPY rows (measured here).

Values are the same as the row-by-row path stores: timestamps are floored to microseconds before they
are formatted (``ns // 1000``, as the binary path does), floats are written in their shortest round-trip
form, an empty string is quoted and a null is not (PostgreSQL's CSV null), integer arrays become array
literals. Only tables whose every column has one of those plain shapes get a codec; anything else (jsonb,
nested records, string arrays, timestamps without time zone) stays on the row-by-row path. The writer
checks each block's alignment (its last row must equal that value decoded alone) and uses the fast path
optimistically: any error (a datum polars cannot read, a row PostgreSQL refuses, a
duplicate key) rolls the transaction back and the batch is written again row by row, where bad records
are isolated to the dead-letter queue and duplicates are skipped.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import psycopg

from kafkaio.errors import ScalpError
from schemas.serde import wire_schema

from .rows import TableSpec

NS_PER_DAY = 86_400 * 1_000_000_000
_PLAIN_AVRO = {"string", "long", "int", "double", "float", "boolean"}
_INT_ARRAY_PG = {"integer[]", "bigint[]", "smallint[]"}
_TIMESTAMPTZ = "timestamp with time zone"


class ColumnarError(ScalpError):
    """The fast path cannot write this batch; the caller writes it row by row."""


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _avro_bytes(data: bytes) -> bytes:
    return _zigzag(len(data)) + data


def _strip(schema: Any) -> Any:
    """The schema polars reads: no ``default``/``doc`` keys (its reader refuses some defaults), no
    timestamp-nanos annotation (the values are longs either way)."""
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k not in ("default", "doc", "aliases")}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def _shape(avro_type: Any) -> str | None:
    """'plain', 'nanos' or 'int_array' for the field types the fast path handles; None otherwise."""
    branches = [b for b in avro_type if b != "null"] if isinstance(avro_type, list) else [avro_type]
    if len(branches) != 1:
        return None
    t = branches[0]
    if isinstance(t, str):
        return "plain" if t in _PLAIN_AVRO else None
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-nanos" and t.get("type") == "long":
            return "nanos"
        if t.get("type") == "array" and t.get("items") in ("int", "long"):
            return "int_array"
        if t.get("logicalType") is None and t.get("type") in _PLAIN_AVRO:
            return "plain"
    return None


@dataclass(frozen=True)
class Column:
    name: str
    source: str
    kind: str  # plain | timestamptz | ts_ns | int_array


class ColumnarCodec:
    def __init__(self, table: str, schema: dict[str, Any], columns: Sequence[Column]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.sync = os.urandom(16)
        meta = _zigzag(2) + _avro_bytes(b"avro.schema") + _avro_bytes(json.dumps(_strip(schema)).encode())
        meta += _avro_bytes(b"avro.codec") + _avro_bytes(b"null") + _zigzag(0)
        self.file_header = b"Obj\x01" + meta + self.sync
        self.parsed = fastavro.parse_schema(wire_schema(schema))
        self.copy_sql = psycopg.sql.SQL("COPY {} ({}) FROM STDIN (FORMAT CSV)").format(
            psycopg.sql.Identifier(table), psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c.name) for c in columns)
        )

    @staticmethod
    def build(spec: TableSpec, schema: dict[str, Any]) -> ColumnarCodec | None:
        """A codec for table ``spec`` fed by records of ``schema`` (the topic's catalog schema), or None
        when a column needs a conversion the fast path does not do."""
        if not spec.sources or len(spec.sources) != len(spec.columns):
            return None
        fields = {f["name"]: f["type"] for f in schema.get("fields", [])}
        columns = []
        for name, source, pg_type in zip(spec.columns, spec.sources, spec.pg_types, strict=True):
            shape = _shape(fields.get(source))
            if name == "ts_ns" and source == "ts" and shape == "nanos":
                kind = "ts_ns"
            elif shape == "nanos" and pg_type == _TIMESTAMPTZ:
                kind = "timestamptz"
            elif shape == "nanos" and pg_type == "bigint":
                kind = "plain"  # the nanoseconds as they are
            elif shape == "int_array" and pg_type in _INT_ARRAY_PG:
                kind = "int_array"
            elif shape == "plain" and pg_type not in ("jsonb", "json", "bytea") and "[]" not in pg_type:
                kind = "plain"
            else:
                return None
            columns.append(Column(name, source, kind))
        return ColumnarCodec(spec.table, wire_schema(schema), columns)

    def frame(self, values: Sequence[bytes]) -> Any:
        """The datums of Confluent-framed ``values`` (5-byte header each) as a polars DataFrame."""
        import polars as pl

        body = b"".join(v[5:] for v in values)
        data = self.file_header + _zigzag(len(values)) + _zigzag(len(body)) + body + self.sync
        try:
            frame = pl.read_avro(io.BytesIO(data))
        except Exception as exc:  # polars reports malformed data in several exception types
            raise ColumnarError(f"block decode: {type(exc).__name__}: {exc}") from None
        if frame.height != len(values):
            raise ColumnarError(f"block decode gave {frame.height} rows for {len(values)} values")
        # A value with bytes after its datum would shift every later one (each is read where the previous
        # ended): the last row, read on its own, must equal the block's last row.
        try:
            last = fastavro.schemaless_reader(io.BytesIO(values[-1][5:]), self.parsed, None)
        except Exception as exc:
            raise ColumnarError(f"last value: {type(exc).__name__}: {exc}") from None
        row = frame.row(frame.height - 1, named=True)
        if not isinstance(last, dict) or any(row[c.source] != last.get(c.source) for c in self.columns):
            raise ColumnarError("the block's last row differs from its value read alone (misaligned datums)")
        return frame

    def csv(self, frame: Any) -> tuple[bytes, set[int]]:
        """(COPY CSV body in column order, UTC days of ``ts``)."""
        import polars as pl

        exprs = []
        for c in self.columns:
            col = pl.col(c.source)
            if c.kind == "timestamptz":
                expr = pl.from_epoch(col // 1000, "us").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
            elif c.kind == "int_array":
                expr = "{" + col.cast(pl.List(pl.String)).list.join(",") + "}"
            else:
                expr = col
            exprs.append(expr.alias(c.name))
        out = frame.select(exprs)
        buf = io.BytesIO()
        out.write_csv(buf, include_header=False, null_value="")
        days: set[int] = set()
        if "ts" in frame.columns:
            days = {int(d) for d in (frame.get_column("ts") // NS_PER_DAY).unique().drop_nulls().to_list()}
        return buf.getvalue(), days
