"""Order plans built from intents, and the broker updates every broker (Tradier, paper) reports in.

An ``order_intents`` record becomes one OTOCO bracket: leg 0 the entry (limit: Tradier refuses an OTOCO
with a market entry), leg 1 the take-profit limit, leg 2 the stop. An intent whose prices cannot make a
valid bracket (a stop above the entry of a long, ...) is refused here, before anything is sent.

Brokers report cumulative state (``exec_qty`` and ``avg_fill_price`` per leg), never increments: that is
what makes an update seen twice (stream and poll, or a duplicate event) harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kafkaio.errors import ScalpError

NS = 1_000_000_000
EXIT_TAG_SUFFIX = "-x"
TAG = re.compile(rf"^[A-Za-z0-9-]{{1,{255 - len(EXIT_TAG_SUFFIX)}}}$")  # the exit's tag must fit too
TERMINAL = frozenset({"filled", "canceled", "rejected", "expired", "previewed", "refused"})
ENTRY, TAKE_PROFIT, STOP_LOSS, EXIT = 0, 1, 2, 3  # EXIT: a separate market order (time stop)

# (entry side, exit side) by instrument and direction
SIDES = {
    ("equity", True): ("buy", "sell"),
    ("equity", False): ("sell_short", "buy_to_cover"),
    ("option", True): ("buy_to_open", "sell_to_close"),
    ("option", False): ("sell_to_open", "buy_to_close"),
}
LONG_SIDES = frozenset({"buy", "buy_to_open"})


class InvalidIntent(ScalpError, ValueError):
    """The intent cannot become an order; the message is the reason recorded with the rejection."""


@dataclass(frozen=True, slots=True)
class Leg:
    index: int
    symbol: str
    side: str
    qty: int
    order_type: str
    price: float | None = None
    stop: float | None = None
    option_symbol: str | None = None

    def to_record(self, broker_leg_id: str | None, status: str | None) -> dict[str, Any]:
        return {
            "index": self.index,
            "symbol": self.option_symbol or self.symbol,
            "side": self.side,
            "qty": self.qty,
            "order_type": self.order_type,
            "price": self.price,
            "stop": self.stop,
            "broker_leg_id": broker_leg_id,
            "status": status,
        }


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """What we send for one intent (or for a time-stop exit: ``order_class`` equity/option, one leg)."""

    order_id: str
    intent: dict[str, Any]
    order_class: str
    legs: tuple[Leg, ...]
    duration: str = "day"
    tag_suffix: str = ""  # the exit's tag is the signal id + EXIT_TAG_SUFFIX: never the bracket's tag

    @property
    def tag(self) -> str:
        """The broker tag: the signal id for the bracket, ``<signal id>-x`` for its exit, so a lookup by tag
        can never take one for the other."""
        return f"{self.intent['signal_id']}{self.tag_suffix}"

    @property
    def long(self) -> bool:
        return self.intent["side"] in LONG_SIDES

    @property
    def multiplier(self) -> int:
        return 100 if self.intent["instrument"] == "option" else 1

    @property
    def entry(self) -> Leg:
        return self.legs[0]


def _positive(name: str, value: Any) -> float:
    if value is None or not isinstance(value, int | float) or not value > 0:
        raise InvalidIntent(f"{name} must be a positive price, got {value!r}")
    return float(value)


def plan_bracket(intent: dict[str, Any], duration: str = "day") -> OrderPlan:
    """The OTOCO bracket for ``intent``; raises InvalidIntent with the reason when it cannot be one."""
    side = intent["side"]
    instrument = intent["instrument"]
    if instrument not in ("equity", "option"):
        raise InvalidIntent(f"instrument must be equity or option, got {instrument!r}")
    long = side in LONG_SIDES
    entry_side, exit_side = SIDES[(instrument, long)]
    if side != entry_side:
        raise InvalidIntent(f"side {side!r} is not an entry side for {instrument} (use {entry_side!r})")
    if instrument == "option" and not intent.get("option_symbol"):
        raise InvalidIntent("an option intent needs option_symbol")
    if not TAG.match(str(intent["signal_id"])):
        raise InvalidIntent("signal_id is not a valid broker tag (letters, digits and '-', at most 253)")
    qty = intent["qty"]
    if not isinstance(qty, int) or qty < 1:
        raise InvalidIntent(f"qty must be a positive integer, got {qty!r}")
    if intent["entry_type"] != "limit":
        raise InvalidIntent(f"an OTOCO entry must be a limit order, got {intent['entry_type']!r}")
    entry = _positive("entry_limit", intent.get("entry_limit"))
    take = _positive("take_profit", intent["take_profit"])
    stop = _positive("stop_loss", intent["stop_loss"])
    if long and not stop < entry < take:
        raise InvalidIntent(f"a long needs stop_loss < entry_limit < take_profit, got {stop} / {entry} / {take}")
    if not long and not take < entry < stop:
        raise InvalidIntent(f"a short needs take_profit < entry_limit < stop_loss, got {take} / {entry} / {stop}")
    symbol, option = intent["symbol"], intent.get("option_symbol")
    legs = (
        Leg(ENTRY, symbol, entry_side, qty, "limit", price=entry, option_symbol=option),
        Leg(TAKE_PROFIT, symbol, exit_side, qty, "limit", price=take, option_symbol=option),
        Leg(STOP_LOSS, symbol, exit_side, qty, "stop", stop=stop, option_symbol=option),
    )
    return OrderPlan(
        order_id=f"ord-{intent['signal_id']}", intent=intent, order_class="otoco", legs=legs, duration=duration
    )


def plan_exit(bracket: OrderPlan, qty: int) -> OrderPlan:
    """A market order closing ``qty`` of ``bracket``'s position (its time stop)."""
    entry = bracket.entry
    exit_side = SIDES[(bracket.intent["instrument"], bracket.long)][1]
    leg = Leg(EXIT, entry.symbol, exit_side, qty, "market", option_symbol=entry.option_symbol)
    order_class = "option" if bracket.intent["instrument"] == "option" else "equity"
    return OrderPlan(
        order_id=f"{bracket.order_id}-x",
        intent=bracket.intent,
        order_class=order_class,
        legs=(leg,),
        tag_suffix=EXIT_TAG_SUFFIX,
    )


@dataclass(frozen=True, slots=True)
class LegUpdate:
    """Cumulative state of one leg (or of a single-leg order) as the broker reports it."""

    index: int
    broker_id: str | None
    status: str
    exec_qty: int
    avg_fill_price: float
    ts: int
    last_fill_qty: int = 0
    last_fill_price: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The broker's view of one of our orders. ``source``: stream, poll or paper."""

    order_id: str
    broker_order_id: str | None
    status: str
    ts: int
    source: str
    legs: tuple[LegUpdate, ...] = ()
    reason: str | None = None


@dataclass(slots=True)
class Submitted:
    """A broker's answer to a submission: its order id (and leg ids when it gives them at once)."""

    broker_order_id: str
    ts: int
    leg_ids: dict[int, str] = field(default_factory=dict)
    status: str = "pending"
    preview: dict[str, Any] | None = None
    sent_ns: int | None = None  # when the order left (paper: event time; a live broker: the router's clock)
    acked_ns: int | None = None  # when the broker acknowledged it (same clock as sent_ns)


class BrokerRejected(ScalpError):
    """The broker refused the order outright; ``reason`` is its text."""

    def __init__(self, reason: str, ts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ts = ts
