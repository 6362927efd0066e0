"""The encoding of the streams worker's state (streams/core/statecodec.py): a real session's state goes
round trip exactly, and every record that is not ours to load is refused before anything runs."""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import io
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core import statecodec
from streams.core.digests import Digests
from streams.core.pipeline import CoreParts, StrategyCore, SymbolStage
from streams.core.policy import load_policy
from streams.core.statecodec import StateError
from tests.streams_util import loose_policy, tape


def _core(tmp: Path) -> StrategyCore:
    policy = load_policy(loose_policy(tmp))
    return StrategyCore(CoreParts.create(policy, Digests("test", policy.digest, "test")))


def _run(core: StrategyCore, records: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    out: list[Any] = []
    for topic, record in records:
        out.extend(core.on_trade(record) if topic == "market_trades" else core.on_quote(record))
    return out


def test_a_sessions_state_round_trips_and_the_restored_core_goes_on_identically(tmp_path: Path) -> None:
    records = tape()
    half = len(records) // 2
    first, second = _core(tmp_path), _core(tmp_path)
    _run(first, records[:half])
    _run(second, records[:half])
    symbols = sorted(first.stage.engines)
    assert symbols
    saved = {s: first.stage.export_state(s) for s in symbols}
    risk = first.risk.export_state()
    assert all(hot.startswith(b"SST\x01") for hot, _ in saved.values())
    # a fresh core restored from the records, fed the second half, says what the one that never stopped says
    restored = _core(tmp_path)
    for symbol, (hot, history) in saved.items():
        restored.stage.import_state(symbol, hot, history)
        assert restored.stage.export_state(symbol) == (hot, history)  # byte for byte
    restored.risk.import_state(risk)
    assert restored.risk.export_state() == risk
    # the merge's held events are not state (their inputs are read again): feed them in both the same way
    restored.stage.mergers = first.stage.mergers
    assert _run(restored, records[half:]) == _run(second, records[half:])


def _record(tree: Any, version: int = statecodec.VERSION) -> bytes:
    return statecodec.MAGIC + bytes([version]) + zlib.compress(orjson.dumps(tree))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_records_not_ours_to_load_are_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cases = {
        "old pickled form": zlib.compress(pickle.dumps(_Exploit(marker))),
        "old pickled form ": pickle.dumps(_Exploit(marker)),  # the risk state was not compressed
        "version 2": _record({}, version=2),
        "no SST header": b"{}",
        "outside the state schema": _record({"~c": "Popen", "~v": {"args": "true"}}),
        "fields it does not have": _record({"~c": "Ema", "~v": {"n": 20, "__class__": 1}}),
        "over the limit": b"SST\x01" + b"\x00" * (statecodec.MAX_BYTES + 1),
        "inflates past the limit": b"SST\x01" + zlib.compress(b" " * (statecodec.MAX_INFLATED + 10), 9),
        "not zlib data": b"SST\x01 not compressed",
        "does not decode": b"SST\x01" + zlib.compress(b"{not json"),
    }
    for expected, data in cases.items():
        with pytest.raises(StateError, match=expected.strip()):
            statecodec.decode(data)
    assert not marker.exists()


def test_the_stage_and_risk_refuse_a_well_formed_record_of_the_wrong_shape(tmp_path: Path) -> None:
    core = _core(tmp_path)
    with pytest.raises(StateError, match="not a symbol's state"):
        core.stage.import_state("SPY", statecodec.encode([1, 2]), None)
    with pytest.raises(StateError, match="unknown fields"):
        core.stage.import_state(
            "SPY", statecodec.encode({"features": {"calendar": 1, "x": 2}, "memories": None, "offsets": None}), None
        )
    with pytest.raises(StateError, match="not a risk engine's state"):
        core.risk.import_state(statecodec.encode({"day": {"date": None}, "open": {}}))


SLOTTED = {"Ema", "SessionDay"}  # declared with __slots__ by the release that pickled state


class OldPickler(pickle.Pickler):
    """Pickles as the releases before the state codec did (protocol 5, objects by class name and fields),
    in the pure-Python build and the compiled one alike (compiled objects pickle differently)."""

    def reducer_override(self, obj: Any) -> Any:
        name = type(obj).__name__
        if statecodec.CLASSES.get(name) is not type(obj):
            return NotImplemented
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return copyreg.__newobj__, (type(obj),), ((None, fields) if name in SLOTTED else fields)


def old_pickle(obj: Any) -> bytes:
    buffer = io.BytesIO()
    OldPickler(buffer, protocol=5).dump(obj)
    return buffer.getvalue()


def test_old_pickled_state_names_nothing_outside_the_state_schema() -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return os.system, ("echo pwned > /dev/null",)

    for payload in (pickle.dumps({"features": Boom()}, protocol=5), old_pickle(collections.OrderedDict(a=1))):
        with pytest.raises(StateError, match="not part of the state schema"):
            statecodec.decode(payload, legacy=True)


def test_old_pickled_state_migrates_once_with_consent(tmp_path: Path) -> None:
    core = _core(tmp_path)
    _run(core, tape()[:20_000])
    symbol = sorted(core.stage.engines)[0]
    engine = core.stage.engines[symbol]
    shared = ("symbol", "params", "calendar", "conditions", "history")
    hot = {f.name: getattr(engine, f.name) for f in dataclasses.fields(engine) if f.name not in shared}
    old = {"features": hot, "memories": core.stage.book.memories.get(symbol), "offsets": core.stage.offsets.get(symbol)}
    old_hot = zlib.compress(old_pickle(old), 1)
    old_history = zlib.compress(old_pickle(engine.history), 1)
    old_risk = old_pickle((core.risk.day, core.risk.open))
    fresh = SymbolStage(core.parts)
    with pytest.raises(StateError, match="old pickled form"):
        fresh.import_state(symbol, old_hot, old_history)
    fresh.import_state(symbol, old_hot, old_history, legacy=True)
    assert fresh.export_state(symbol) == core.stage.export_state(symbol)  # written back in the new form
    again = _core(tmp_path)
    again.risk.import_state(old_risk, legacy=True)
    assert again.risk.export_state() == core.risk.export_state()
