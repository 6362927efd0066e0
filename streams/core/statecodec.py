"""The encoding of the strategy state the streams worker keeps in its changelog topics.

Nothing read from Kafka is unpickled: anyone who can write a topic could run code in a worker that did.
A state record is ``SST`` + a version byte + zlib-compressed JSON of a tagged tree:

- JSON scalars and lists as they are; non-finite floats as ``{"~f": "nan" | "inf" | "-inf"}``;
- ``{"~t": [...]}`` a tuple, ``{"~s": [...]}`` a set, ``{"~q": [...], "~m": maxlen}`` a deque,
  ``{"~d": [[key, value], ...]}`` a dict whose keys are not all plain strings, ``{"~date": "YYYY-MM-DD"}``;
- ``{"~c": name, "~v": {field: value}}`` an object of one of the classes in :data:`CLASSES` (the state's
  schema: a name outside it is refused, and so is a field the class does not have).

A record of another version, longer than :data:`MAX_BYTES`, or inflating past :data:`MAX_INFLATED` is
refused with :class:`StateError`, as is a record in the old pickled form (see ``streams.legacy_state``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
import pickle
import zlib
from collections import deque
from typing import Any

import orjson

from .errors import CoreError
from .features import Counters, Ema
from .risk import Position, RiskDay
from .sessions import SessionDay
from .setups import Memory

MAGIC = b"SST"
VERSION = 1
MAX_BYTES = 16 << 20  # a stored record
MAX_INFLATED = 64 << 20  # its JSON once inflated
CLASSES: dict[str, type] = {cls.__name__: cls for cls in (Counters, Ema, SessionDay, Memory, Position, RiskDay)}
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class StateError(CoreError):
    """A state record that is not ours to load (tampered, another version, oversized, pickled)."""


# every state class is a dataclass: objects are rebuilt through their constructors (a compiled build's classes
# cannot be made without one), fields a newer class added taking their defaults
_FIELDS = {name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in CLASSES.items()}


def _tree(obj: Any) -> Any:
    kind = type(obj)
    if obj is None or kind in (str, bool, int):
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else {"~f": str(obj)}
    if kind is list:
        return [_tree(x) for x in obj]
    if kind is tuple:
        return {"~t": [_tree(x) for x in obj]}
    if kind is dict:
        if all(type(k) is str and not k.startswith("~") for k in obj):
            return {k: _tree(v) for k, v in obj.items()}
        return {"~d": [[_tree(k), _tree(v)] for k, v in obj.items()]}
    if kind in (set, frozenset):
        return {"~s": sorted((_tree(x) for x in obj), key=orjson.dumps)}
    if kind is deque:
        return {"~q": [_tree(x) for x in obj], "~m": obj.maxlen}
    if kind is dt.date:
        return {"~date": obj.isoformat()}
    name = kind.__name__
    if CLASSES.get(name) is not kind:
        raise TypeError(f"{kind.__module__}.{name} is not part of the state schema (streams/core/statecodec.py)")
    return {"~c": name, "~v": {f: _tree(getattr(obj, f)) for f in _FIELDS[name]}}


def _object(name: Any, values: Any, built: bool = False) -> Any:
    """An object of a state class from its fields (``built``: the values are objects already, else tree
    nodes of the JSON form)."""
    cls = CLASSES.get(name) if type(name) is str else None
    if cls is None or type(values) is not dict:
        raise StateError(f"state names a class outside the state schema: {str(name)[:60]!r}")
    unknown = set(values) - set(_FIELDS[name])
    if unknown:
        raise StateError(f"state gives {name} fields it does not have: {sorted(unknown)[:5]}")
    return cls(**(values if built else {key: _value(value) for key, value in values.items()}))


def _value(node: Any) -> Any:
    kind = type(node)
    if kind is list:
        return [_value(x) for x in node]
    if kind is not dict:
        return node
    if "~c" in node:
        return _object(node["~c"], node.get("~v"))
    if "~t" in node:
        return tuple(_value(x) for x in node["~t"])
    if "~s" in node:
        return {_value(x) for x in node["~s"]}
    if "~q" in node:
        return deque((_value(x) for x in node["~q"]), maxlen=node.get("~m"))
    if "~d" in node:
        return {_value(k): _value(v) for k, v in node["~d"]}
    if "~f" in node:
        return _SPECIAL[node["~f"]]
    if "~date" in node:
        return dt.date.fromisoformat(node["~date"])
    return {k: _value(v) for k, v in node.items()}


class _Pickled:
    """An object of a state class as the old pickled form held it: its class name and fields, until
    :func:`_from_legacy` builds the object through its constructor (and the schema's field check)."""

    state_class = ""
    values: dict[str, Any]

    def __new__(cls, *args: Any) -> _Pickled:  # pickle makes objects with __new__ alone, not __init__
        obj = super().__new__(cls)
        obj.values = {}
        return obj

    def __setstate__(self, state: Any) -> None:  # a dict, or (dict | None, slots dict) for slotted classes
        parts = state if type(state) is tuple else (state,)
        for part in parts:
            if part is not None:
                self.values.update(part)


_PICKLED = {name: type(name, (_Pickled,), {"state_class": name}) for name in CLASSES}
_PICKLE_GLOBALS = {("collections", "deque"): deque, ("datetime", "date"): dt.date, ("builtins", "set"): set}


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles the old form with nothing but the state schema's classes and the containers it used: no
    other global (so no code) is reachable, and the state classes are only named, not instantiated here."""

    def find_class(self, module: str, name: str) -> Any:
        cls = CLASSES.get(name)
        if cls is not None and cls.__module__ == module:
            return _PICKLED[name]
        if (module, name) in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[(module, name)]
        raise StateError(f"old pickled state names {module}.{name}, which is not part of the state schema")


def _from_legacy(obj: Any) -> Any:
    kind = type(obj)
    if isinstance(obj, _Pickled):
        return _object(obj.state_class, {k: _from_legacy(v) for k, v in obj.values.items()}, built=True)
    if kind in (list, tuple, set, frozenset):
        return kind(_from_legacy(x) for x in obj)
    if kind is deque:
        return deque((_from_legacy(x) for x in obj), maxlen=obj.maxlen)
    if kind is dict:
        return {_from_legacy(k): _from_legacy(v) for k, v in obj.items()}
    return obj


def encode(obj: Any) -> bytes:
    """A state record of ``obj`` (TypeError for a value outside the state schema)."""
    return MAGIC + bytes([VERSION]) + zlib.compress(orjson.dumps(_tree(obj)), 1)


def is_legacy(data: bytes) -> bool:
    """A record in the pickled form written before this encoding (zlib of a pickle, or a pickle)."""
    return not data.startswith(MAGIC) and data[:1] in (b"\x78", b"\x80")


def decode(data: bytes, *, legacy: bool = False) -> Any:
    """The state in a record; StateError when it is not one this version wrote. ``legacy``: also accept
    the old pickled form (unpickled: only with the operator's consent, to migrate once)."""
    if len(data) > MAX_BYTES:
        raise StateError(f"state record of {len(data):,} bytes is over the limit of {MAX_BYTES:,}")
    if is_legacy(data):
        if not legacy:
            raise StateError(
                "state record in the old pickled form: refused (set streams.legacy_state: migrate for one run "
                "to convert state written by a trusted worker, or reset the worker's state)"
            )
        body = _inflate(data) if data[:1] == b"\x78" else data
        try:
            return _from_legacy(_LegacyUnpickler(io.BytesIO(body)).load())
        except StateError:
            raise
        except Exception as exc:  # whatever the bytes make pickle raise
            raise StateError(f"old pickled state does not load: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not data.startswith(MAGIC) or len(data) < 4:
        raise StateError("not a state record (no SST header)")
    if data[3] != VERSION:
        raise StateError(f"state record of version {data[3]}; this worker reads version {VERSION}")
    try:
        tree = orjson.loads(_inflate(data[4:]))
        return _value(tree)
    except StateError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise StateError(f"state record does not decode: {type(exc).__name__}: {str(exc)[:200]}") from None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED)
    except zlib.error as exc:
        raise StateError(f"state record is not zlib data: {exc}") from None
    if inflater.unconsumed_tail:
        raise StateError(f"state record inflates past the limit of {MAX_INFLATED:,} bytes")
    return out
