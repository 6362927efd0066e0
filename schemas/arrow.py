"""Arrow (Parquet) types of the catalog's records, from their Avro schemas, so every Parquet file the project
writes reads with the right types in pandas, polars and duckdb.

Avro ``timestamp-nanos`` -> ``timestamp[ns, UTC]``, ``decimal(p, s)`` (money) -> ``decimal128(p, s)``,
``date`` -> ``date32``, ``long``/``int`` -> ``int64``/``int32``, ``double`` -> ``float64``, arrays ->
lists, nested records -> structs, ``["null", T]`` -> a nullable T. ``to_table`` takes records as the serde
decodes them (event times as int nanoseconds, money as ``Decimal``) and ``to_records`` gives them back
exactly so (timestamps cast to int64 before leaving Arrow: Python datetimes hold microseconds only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from kafkaio.errors import ConfigError

UTC_NS = pa.timestamp("ns", tz="UTC")
_PRIMITIVES = {
    "string": pa.string(),
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "int": pa.int32(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
}


def arrow_type(avro: Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) of an Avro type."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise ConfigError(f"no Arrow type for the union {avro}: only [null, T] is supported")
        return arrow_type(branches[0])[0], "null" in avro
    if isinstance(avro, str):
        if avro not in _PRIMITIVES:
            raise ConfigError(f"no Arrow type for the Avro type {avro!r}")
        return _PRIMITIVES[avro], False
    logical = avro.get("logicalType")
    if logical == "timestamp-nanos":
        return UTC_NS, False
    if logical == "decimal":
        return pa.decimal128(int(avro["precision"]), int(avro.get("scale", 0))), False
    if logical == "date":
        return pa.date32(), False
    kind = avro["type"]
    if kind == "array":
        return pa.list_(arrow_type(avro["items"])[0]), False
    if kind == "record":
        return pa.struct(arrow_fields(avro)), False
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(avro["values"])[0]), False
    if kind == "enum":
        return pa.string(), False
    return arrow_type(kind)


def arrow_fields(record: dict[str, Any]) -> list[pa.Field]:
    out = []
    for field in record["fields"]:
        kind, nullable = arrow_type(field["type"])
        out.append(pa.field(field["name"], kind, nullable=nullable))
    return out


def arrow_schema(record: dict[str, Any], drop: Iterable[str] = ()) -> pa.Schema:
    """The Arrow schema of an Avro record schema, less the fields in ``drop`` (Hive partition columns)."""
    gone = set(drop)
    return pa.schema([f for f in arrow_fields(record) if f.name not in gone])


def _storage(kind: pa.DataType) -> pa.DataType:
    """``kind`` with every timestamp as int64 (how the records hold event times)."""
    if pa.types.is_timestamp(kind):
        return pa.int64()
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _storage(f.type), f.nullable) for f in kind])
    if pa.types.is_list(kind):
        return pa.list_(_storage(kind.value_type))
    return kind


def to_table(records: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Records (event times as int ns, money as Decimal) as a table of ``schema``; fields the schema does
    not name are left out."""
    names = schema.names
    rows = [{name: r.get(name) for name in names} for r in records]
    storage = pa.schema([pa.field(f.name, _storage(f.type), f.nullable) for f in schema])
    return pa.Table.from_pylist(rows, schema=storage).cast(schema)


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as records: timestamps as int ns (any unit), decimals as Decimal."""
    fields = []
    for f in table.schema:
        kind = f.type
        if pa.types.is_timestamp(kind) and kind.unit != "ns":
            table = table.set_column(table.schema.get_field_index(f.name), f.name, table[f.name].cast(UTC_NS))
        fields.append(pa.field(f.name, _storage(kind), f.nullable))
    rows: list[dict[str, Any]] = table.cast(pa.schema(fields)).to_pylist()
    return rows


def is_time_column(name: str) -> bool:
    """Columns that hold event times in int ns by the project's naming (``ts``, ``*_ts``, ``ts_*``)."""
    return name == "ts" or name.endswith("_ts") or name.startswith("ts_")


def typed_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows that are no one topic's records (labels, datasets): the event-time columns (by name, holding
    integers) as ``timestamp[ns, UTC]``, the rest as Arrow infers them."""
    table = pa.Table.from_pylist(rows)
    for i, field in enumerate(table.schema):
        if is_time_column(field.name) and pa.types.is_integer(field.type):
            table = table.set_column(i, field.name, table[field.name].cast(pa.int64()).cast(UTC_NS))
    return table
