"""Hypothesis strategies generated from Avro schemas (every type our catalog uses)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def from_schema(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    named = {} if named is None else named
    if isinstance(schema, list):
        return st.one_of([from_schema(branch, named) for branch in schema])
    if isinstance(schema, str):
        if schema in named:
            return named[schema]
        return _primitive(schema)
    logical = schema.get("logicalType")
    if logical == "timestamp-nanos":
        return st.integers(*INT64)
    if logical == "date":
        return st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31))
    if logical == "decimal":
        digits = schema["precision"] - schema["scale"]
        bound = Decimal(10) ** digits - 1
        return st.decimals(
            min_value=-bound, max_value=bound, places=schema["scale"], allow_nan=False, allow_infinity=False
        )
    kind = schema["type"]
    if kind == "array":
        return st.lists(from_schema(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), from_schema(schema["values"], named), max_size=3)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "record":
        fields = {f["name"]: from_schema(f["type"], named) for f in schema["fields"]}
        strategy = st.fixed_dictionaries(fields)
        named[schema["name"]] = strategy
        if "namespace" in schema:
            named[f"{schema['namespace']}.{schema['name']}"] = strategy
        return strategy
    return from_schema(kind, named)


def _primitive(name: str) -> st.SearchStrategy[Any]:
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(*INT32),
        "long": st.integers(*INT64),
        "float": st.floats(allow_nan=False, width=32),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=20),
    }[name]
