"""The strategy core end to end: market records in, (topic, record) outputs out, in a deterministic order.

``SymbolStage`` is the per-symbol part (event-time merge of trades and quotes, features, setups); it is what
a Faust worker runs for the partitions it owns. ``RiskEngine`` is account-wide. ``StrategyCore`` chains both
in one process: the replay engine drives it, and tests compare it with the Faust app.

Outputs are ``(topic, record)`` pairs: ``features``, ``signals``, ``risk_decisions``, ``order_intents``,
``risk_day``, and, between the stages, ``RISK_INPUT`` records (a signal with the market state it saw).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from schemas.topics import FEATURES, SIGNALS

from . import statecodec
from .conditions import ConditionTable
from .digests import Digests
from .features import Counters, Snapshot, SymbolFeatures
from .merge import QUOTE, TRADE, Late, Merger
from .policy import SessionPolicy
from .risk import Market, RiskEngine
from .sessions import Calendar
from .setups import SetupBook

RISK_INPUT = "risk_input"
_SHARED = ("symbol", "params", "calendar", "conditions")  # not state: given by the stage
# the feature engine's hot state: its fields, by name (not vars(): a compiled build's objects have no __dict__)
_HOT = tuple(f.name for f in fields(SymbolFeatures) if f.name not in _SHARED and f.name != "history")
Output = tuple[str, dict[str, Any]]


@dataclass
class CoreParts:
    """What every stage shares: policy, calendar, condition table and the digests stamped on outputs."""

    policy: SessionPolicy
    calendar: Calendar
    conditions: ConditionTable
    digests: Digests

    @classmethod
    def create(cls, policy: SessionPolicy, digests: Digests, conditions: ConditionTable | None = None) -> CoreParts:
        return cls(policy, Calendar(), conditions or ConditionTable.load(), digests)


class SymbolStage:
    """Features and setups for any number of symbols (each symbol's state is independent)."""

    def __init__(self, parts: CoreParts, grace_ms: int | None = None) -> None:
        self.parts = parts
        self.engines: dict[str, SymbolFeatures] = {}
        self.mergers: dict[str, Merger] = {}
        # the merge floors (streams/core/merge.py), from inputs with a source: per (kind, partition) the newest
        # event time read from it, any symbol; a stream is not waited for past that less ``grace_ms``. None:
        # no floors (a replay: its inputs come in event-time order)
        self.grace: int | None = None if grace_ms is None else grace_ms * 1_000_000  # event times are in ns
        self.stream_time: dict[tuple[str, int], int] = {}
        self.homes: dict[str, tuple[int, int]] = {}  # symbol -> (trade partition, quote partition), -1: none yet
        self.book = SetupBook(parts.policy, parts.digests)
        # symbol -> (topic, partition) -> offset of the last input applied to its state (a worker that
        # restarts from an older committed offset skips what its restored state already holds)
        self.offsets: dict[str, dict[tuple[str, int], int]] = {}
        # (symbol, source) of the events applied since the caller last looked
        self.applied: list[tuple[str, tuple[str, int, int]]] = []

    def engine(self, symbol: str) -> SymbolFeatures:
        engine = self.engines.get(symbol)
        if engine is None:
            engine = self.engines[symbol] = SymbolFeatures(
                symbol, self.parts.policy.features, self.parts.calendar, self.parts.conditions
            )
        return engine

    def push(self, kind: str, record: dict[str, Any], source: tuple[str, int, int] | None = None) -> list[Output]:
        """A trade (``TRADE``) or quote (``QUOTE``) record from its topic, in arrival order. ``source``
        (topic, partition, offset), when given, is recorded in ``offsets`` once the event is applied and
        appended to ``applied`` (the caller acknowledges inputs from it)."""
        symbol = record["symbol"]
        merger = self.mergers.get(symbol)
        if merger is None:
            merger = self.mergers[symbol] = Merger()
        # only what the features read is held (and kept in state): ts first, then the values
        if kind == TRADE:
            payload: tuple[Any, ...] = (record["ts"], record["price"], record["size"], record.get("conditions"))
        else:
            payload = (record["ts"], record["bid"], record["ask"], record["bid_size"], record["ask_size"])
        ts = record["ts"]
        out: list[Output] = []
        if self.grace is None or source is None:
            merger.push(kind, ts, record.get("seq") or 0, (payload, source))
            for k, rec in merger.pop_ready():
                self._apply(symbol, k, rec, out)
            return out
        # the partition's time, as of this event: read before the merge releases anything
        partition = source[1]
        now = self.saw(kind, partition, ts)
        home = self.homes.get(symbol, (-1, -1))
        if kind == TRADE and home[0] != partition:
            home = self.homes[symbol] = (partition, home[1])
        elif kind == QUOTE and home[1] != partition:
            home = self.homes[symbol] = (home[0], partition)
        if not merger.push(kind, ts, record.get("seq") or 0, (payload, source), now - self.grace):
            self.engine(symbol).counters.late_events += 1
        for k, rec in merger.pop_ready(*self.floors(home)):
            self._apply(symbol, k, rec, out)
        return out

    def saw(self, kind: str, partition: int, ts: int) -> int:
        """An input of the partition read (pushed, or already in the restored state: its time counts all the
        same): the partition's time now."""
        key = (kind, partition)
        now = self.stream_time.get(key, -1)
        if ts > now and self.grace is not None:
            now = self.stream_time[key] = ts
        return now

    def floors(self, home: tuple[int, int]) -> tuple[int, int]:
        """(trades floor, quotes floor) of a symbol whose streams come from the partitions ``home``."""
        grace = self.grace or 0
        trades = self.stream_time.get((TRADE, home[0]), -1)
        quotes = self.stream_time.get((QUOTE, home[1]), -1)
        return (trades - grace if trades >= 0 else -1, quotes - grace if quotes >= 0 else -1)

    def release(self) -> list[Output]:
        """What the partitions' times release of the symbols whose events are held (a symbol whose stream is
        quiet: other symbols' inputs move its floors). Only with floors; any time, as often as wanted."""
        out: list[Output] = []
        if self.grace is None:
            return out
        for symbol in sorted(self.mergers):
            merger = self.mergers[symbol]
            home = self.homes.get(symbol)
            if len(merger) and home is not None:
                for k, rec in merger.pop_ready(*self.floors(home)):
                    self._apply(symbol, k, rec, out)
        return out

    def drain(self, symbol: str | None = None) -> list[Output]:
        """Release every held event (the end of input)."""
        out: list[Output] = []
        for sym in [symbol] if symbol else sorted(self.mergers):
            merger = self.mergers.get(sym)
            if merger is not None:
                for k, rec in merger.drain():
                    self._apply(sym, k, rec, out)
        return out

    def held(self) -> int:
        return sum(len(m) for m in self.mergers.values())

    def _apply(self, symbol: str, kind: str, item: Any, out: list[Output]) -> None:
        late = type(item) is Late
        ev, source = item.payload if late else item
        if source is not None:
            topic, partition, offset = source
            offsets = self.offsets.setdefault(symbol, {})
            if offset > offsets.get((topic, partition), -1):  # events of one time released out of read order
                offsets[(topic, partition)] = offset
            self.applied.append((symbol, source))
        if late:
            return  # counted when it came (SymbolStage.push)
        engine = self.engine(symbol)
        # arguments by position, not *ev: a compiled build makes a direct call of that, a generic one of *ev
        if kind == TRADE:
            snap = engine.on_trade(ev[0], ev[1], ev[2], ev[3])
        else:
            snap = engine.on_quote(ev[0], ev[1], ev[2], ev[3], ev[4])
        if snap is not None:
            self._emit(snap, out)

    def _emit(self, snap: Snapshot, out: list[Output]) -> None:
        out.append((FEATURES, snap.record(self.parts.digests)))
        self.setups(snap, out)

    def setups(self, snap: Snapshot, out: list[Output]) -> None:
        """The setups' signals on ``snap`` (a snapshot computed here, or a stored one: --source features),
        each followed by its risk input."""
        market = Market(snap.bid, snap.ask, snap.last_trade_ts, snap.last_quote_ts).to_dict()
        for signal in self.book.on_snapshot(snap):
            out.append((SIGNALS, signal))
            out.append((RISK_INPUT, {"signal": signal, "market": market}))

    def counters(self) -> dict[str, Counters]:
        return {s: e.counters for s, e in self.engines.items()}

    # --- state (Faust tables hold these bytes: streams/core/statecodec.py) --------------------------

    def export_state(self, symbol: str) -> tuple[bytes, bytes]:
        """(hot state, history) of a symbol: everything applied so far, not the events still held by the
        merge (their inputs are not acknowledged, so a restarted worker reads them again). History (prior
        sessions' volume curves) changes only at a session roll: callers write it only when it changed."""
        engine = self.engine(symbol)
        hot = {k: getattr(engine, k) for k in _HOT}
        body = {
            FEATURES: hot,  # the state key of the feature engine ("features", as in every stored state)
            "memories": self.book.memories.get(symbol),
            "offsets": self.offsets.get(symbol),
        }
        return statecodec.encode(body), statecodec.encode(engine.history)

    def import_state(self, symbol: str, hot: bytes, history: bytes | None, legacy: bool = False) -> None:
        """Restore a symbol from :meth:`export_state`'s records (StateError when they are not ours to load;
        ``legacy``: the old pickled form is accepted, to migrate it once)."""
        body = statecodec.decode(hot, legacy=legacy)
        past = None if history is None else statecodec.decode(history, legacy=legacy)
        if type(body) is not dict or type(body.get(FEATURES)) is not dict or not {"memories", "offsets"} <= set(body):
            raise statecodec.StateError(f"{symbol}: state record is not a symbol's state")
        unknown = set(body[FEATURES]) - set(_HOT)
        if unknown:
            raise statecodec.StateError(
                f"{symbol}: state gives the feature engine unknown fields {sorted(unknown)[:5]}"
            )
        engine = self.engine(symbol)
        for name, value in body[FEATURES].items():
            setattr(engine, name, value)
        if past is not None:
            engine.history = past
        if body["memories"] is not None:
            self.book.memories[symbol] = body["memories"]
        if body["offsets"] is not None:
            self.offsets[symbol] = body["offsets"]

    def forget(self) -> None:
        """Drop every symbol's state (after a rebalance it is read back from the tables)."""
        self.engines.clear()
        self.mergers.clear()
        self.book.memories.clear()
        self.offsets.clear()
        # the partitions' times too: rebuilt from what is read again (kept, an event held at the revocation
        # and read again would meet the floor of inputs read after it, and be late this time)
        self.stream_time.clear()
        self.homes.clear()


class StrategyCore:
    """Symbol stage + risk in one process (replay, tests, benchmarks). Risk inputs are consumed here."""

    def __init__(self, parts: CoreParts) -> None:
        self.parts = parts
        self.stage = SymbolStage(parts)
        self.risk = RiskEngine(parts.policy.risk, parts.calendar, parts.digests)

    def on_trade(self, record: dict[str, Any]) -> list[Output]:
        return self._risk(self.stage.push(TRADE, record))

    def on_quote(self, record: dict[str, Any]) -> list[Output]:
        return self._risk(self.stage.push(QUOTE, record))

    def on_trade_closed(self, ledger: dict[str, Any]) -> list[Output]:
        return self.risk.on_trade_closed(ledger)

    def on_order(self, order: dict[str, Any]) -> list[Output]:
        return self.risk.on_order_refused(order)

    def finish(self) -> list[Output]:
        return self._risk(self.stage.drain())

    def on_snapshots(self, snaps: list[Snapshot]) -> list[Output]:
        """Stored snapshots of one event time (``--source features``): their signals, then risk on them in
        the live risk agent's order at one event time (signal id; streams/riskorder.py), as the symbols'
        snapshots of one boundary reach it from any worker in any order."""
        out: list[Output] = []
        for snap in snaps:
            self.stage.setups(snap, out)
        inputs = sorted((r for t, r in out if t == RISK_INPUT), key=lambda r: (r["signal"]["ts"], r["signal"]["id"]))
        kept = [(t, r) for t, r in out if t != RISK_INPUT]
        for record in inputs:
            kept.extend(self.risk.on_signal(record["signal"], Market.from_dict(record["market"])))
        return kept

    def _risk(self, outputs: list[Output]) -> list[Output]:
        for topic, _ in outputs:  # (a loop, not any() over a generator: this runs on every event)
            if topic == RISK_INPUT:
                break
        else:
            return outputs
        out: list[Output] = []
        for topic, record in outputs:
            if topic == RISK_INPUT:
                out.extend(self.risk.on_signal(record["signal"], Market.from_dict(record["market"])))
            else:
                out.append((topic, record))
        return out
