"""The worker's state in Faust tables (changelog topics): each symbol's stage state, and the account-wide
risk state with the offset of the last risk input it includes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from .core.pipeline import Output, SymbolStage
from .core.risk import Market, RiskEngine
from .core.statecodec import StateError
from .riskorder import RiskOrder

log = logging.getLogger(__name__)
ACCOUNT_KEY = b"account"
ORDER_KEY = b"account/order"  # the risk inputs held until their turn


def put(table: Any, key: bytes, value: bytes, partition: int) -> None:
    """Set a table key with its changelog record on ``partition``: a symbol's state (both of its keys)
    belongs to the partition its inputs come from, whatever the keys hash to, so the worker that owns
    the input partition recovers it."""
    table.data[key] = value
    table.send_changelog(partition, key, value)


class SymbolStore:
    """Per symbol: the hot state under ``<symbol>`` and the history of prior sessions under
    ``<symbol>/history`` (written only when it changes)."""

    def __init__(self, stage: SymbolStage, legacy: bool = False) -> None:
        self.stage = stage
        self.legacy = legacy  # accept state in the old pickled form (streams.legacy_state: migrate)
        self.failure: str | None = None  # a state record refused: the worker stops
        self.table: Any = None  # the Faust table (set when the app is built)
        self.loaded: set[str] = set()  # symbols whose state was read from the table
        self.history_written: dict[str, bytes] = {}
        self.partition_of: dict[str, int] = {}  # symbol -> its input partition (= its state's partition)

    def load(self, symbol: str) -> None:
        hot = self.table.get(symbol.encode())
        if hot is not None:
            history = self.table.get(f"{symbol}/history".encode())
            try:
                self.stage.import_state(symbol, hot, history, legacy=self.legacy)
            except StateError as exc:
                self.failure = f"state of {symbol} refused: {exc}"
                log.error("%s; the worker stops", self.failure)
                raise
            log.info("%s: state restored (offsets %s)", symbol, self.stage.offsets.get(symbol))
        self.loaded.add(symbol)

    def save(self, symbol: str, owns: Callable[[int], bool]) -> None:
        """Write the symbol's state, unless it was forgotten at a revocation or its partition is no longer
        ours (``owns``): then the state in the table is the one to keep."""
        partition = self.partition_of[symbol]
        if symbol not in self.loaded or not owns(partition):
            return
        hot, history = self.stage.export_state(symbol)
        if self.history_written.get(symbol) != history:
            put(self.table, f"{symbol}/history".encode(), history, partition)
            self.history_written[symbol] = history
        put(self.table, symbol.encode(), hot, partition)

    def forget(self) -> None:
        """At a revocation: read back from the (recovered) table when next seen."""
        self.loaded.clear()
        self.history_written.clear()


class RiskState:
    """The risk engine, its table, the offset of the last risk input its state includes (-1: none) and the
    inputs held until their turn (streams.riskorder), under a key of their own."""

    def __init__(self, engine: RiskEngine, partitions: int, legacy: bool = False) -> None:
        self.engine = engine
        self.order = RiskOrder(partitions)
        self.legacy = legacy
        self.failure: str | None = None
        self.table: Any = None  # the Faust table (set when the app is built)
        self.loaded = False
        self.offset = -1

    def load(self) -> None:
        """Read the state from the table, once per assignment."""
        if self.loaded:
            return
        state = self.table.get(ACCOUNT_KEY)
        if state is not None:
            try:
                self.engine.import_state(state[8:], legacy=self.legacy)
            except StateError as exc:
                self.failure = f"risk state refused: {exc}"
                log.error("%s; the worker stops", self.failure)
                raise
            self.offset = int.from_bytes(state[:8], "big", signed=True)
        else:
            self.offset = -1
        self.order = RiskOrder(self.order.partitions)
        held = self.table.get(ORDER_KEY)
        if held is not None:
            try:
                self.order.restore(held)
            except StateError as exc:
                self.failure = f"risk state refused: {exc}"
                log.error("%s; the worker stops", self.failure)
                raise
        self.loaded = True

    def save(self) -> None:
        put(self.table, ORDER_KEY, self.order.export(), 0)
        put(self.table, ACCOUNT_KEY, self.offset.to_bytes(8, "big", signed=True) + self.engine.export_state(), 0)

    def take(self, value: bytes) -> list[Output]:
        """One record of the risk input partition: held in order; what its turn has come for is applied."""
        self.order.take(value)
        out: list[Output] = []
        for ready in self.order.release():
            out.extend(self.apply(ready))
        return out

    def apply(self, value: bytes) -> list[Output]:
        """One risk input (a signal with its market, a closed trade, or a refused order)."""
        body = orjson.loads(value)
        if "ledger" in body:
            return self.engine.on_trade_closed(body["ledger"])
        if "order" in body:
            return self.engine.on_order_refused(body["order"])
        return self.engine.on_signal(body["signal"], Market.from_dict(body["market"]))
