"""Tradier's JSON at the boundary: order forms out; orders, account events, balances, positions in.

Tradier answers a list with one element as a bare object and an empty list as the string "null"
(``{"orders": "null"}``); :func:`items` handles both. Quantities are JSON numbers with a fraction
(``50.0``). Times are ISO 8601 UTC with milliseconds (``2026-11-20T14:31:02.123Z``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from execution.model import LegUpdate as Leg
from execution.model import OrderPlan, OrderUpdate

NS = 1_000_000_000


def to_ns(text: str | None) -> int | None:
    if not text:
        return None
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    delta = t - epoch
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def http_date_ns(value: str | None) -> int | None:
    """The ``Date`` header of a broker reply (its clock, to the second)."""
    if not value:
        return None
    return int(parsedate_to_datetime(value).timestamp()) * NS


def items(container: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(container, dict):
        return []  # "null"
    value = container.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def is_plan(obj: dict[str, Any], plan: OrderPlan) -> bool:
    """Whether a broker order (as Tradier lists it) is ``plan``'s: the same tag, class, and the same symbol
    and side on its first leg (the order itself when it has one leg). A tag alone is not enough: a
    cancelled bracket and the exit that closes its position belong to one signal."""
    if str(obj.get("tag")) != plan.tag or str(obj.get("class")) != plan.order_class:
        return False
    legs = obj.get("leg")
    head = (legs[0] if isinstance(legs, list) else legs) if legs else obj
    entry = plan.legs[0]
    if entry.option_symbol and head.get("option_symbol") != entry.option_symbol:
        return False
    return str(head.get("symbol")) == entry.symbol and str(head.get("side")) == entry.side


def _price(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else ""


def order_form(plan: OrderPlan, preview: bool) -> list[tuple[str, str]]:
    """The form Tradier takes for ``plan``: a single order, or an advanced order with indexed legs."""
    form: list[tuple[str, str]] = [("class", plan.order_class), ("duration", plan.duration), ("tag", plan.tag)]
    if len(plan.legs) == 1:
        leg = plan.legs[0]
        form += [("symbol", leg.symbol)]
        if leg.option_symbol:
            form += [("option_symbol", leg.option_symbol)]
        form += [("side", leg.side), ("quantity", str(leg.qty)), ("type", leg.order_type)]
        if leg.price is not None:
            form.append(("price", _price(leg.price)))
        if leg.stop is not None:
            form.append(("stop", _price(leg.stop)))
    else:
        for i, leg in enumerate(plan.legs):
            form += [(f"symbol[{i}]", leg.symbol)]
            if leg.option_symbol:
                form += [(f"option_symbol[{i}]", leg.option_symbol)]
            form += [(f"side[{i}]", leg.side), (f"quantity[{i}]", str(leg.qty)), (f"type[{i}]", leg.order_type)]
            if leg.price is not None:
                form.append((f"price[{i}]", _price(leg.price)))
            if leg.stop is not None:
                form.append((f"stop[{i}]", _price(leg.stop)))
    if preview:
        form.append(("preview", "true"))
    return form


def _qty(value: Any) -> int:
    return round(float(value or 0))


def _leg(index: int, obj: dict[str, Any], fallback_ts: int) -> Leg:
    return Leg(
        index=index,
        broker_id=str(obj["id"]) if obj.get("id") is not None else None,
        status=str(obj.get("status") or "pending"),
        exec_qty=_qty(obj.get("exec_quantity", obj.get("executed_quantity"))),
        avg_fill_price=float(obj.get("avg_fill_price") or 0.0),
        ts=to_ns(obj.get("transaction_date")) or fallback_ts,
        last_fill_qty=_qty(obj.get("last_fill_quantity")),
        last_fill_price=float(obj.get("last_fill_price") or 0.0),
        reason=obj.get("reason_description"),
    )


def order_update(obj: dict[str, Any], plan: OrderPlan, source: str, fallback_ts: int) -> OrderUpdate:
    """An order as ``GET /accounts/{id}/orders[/{order_id}]`` returns it, for our ``plan``."""
    ts = to_ns(obj.get("transaction_date")) or to_ns(obj.get("create_date")) or fallback_ts
    sub = items(obj, "leg")
    if len(plan.legs) > 1:
        legs = tuple(_leg(leg.index, part, ts) for leg, part in zip(plan.legs, sub, strict=False))
    else:
        legs = (_leg(plan.legs[0].index, obj, ts),)
    return OrderUpdate(
        order_id=plan.order_id,
        broker_order_id=str(obj["id"]),
        status=str(obj.get("status") or "pending"),
        ts=ts,
        source=source,
        legs=legs,
        reason=obj.get("reason_description"),
    )


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One ``order`` event of the account stream: an order or one leg of an advanced order."""

    broker_id: str
    parent_id: str | None
    status: str
    exec_qty: int
    avg_fill_price: float
    last_fill_qty: int
    last_fill_price: float
    ts: int | None
    reason: str | None
    raw: dict[str, Any]

    def leg(self, index: int, fallback_ts: int) -> Leg:
        return Leg(
            index,
            self.broker_id,
            self.status,
            self.exec_qty,
            self.avg_fill_price,
            self.ts or fallback_ts,
            self.last_fill_qty,
            self.last_fill_price,
            self.reason,
        )


def stream_event(obj: dict[str, Any]) -> StreamEvent:
    """Raises KeyError/ValueError/TypeError for an event without an id or with wrong types."""
    parent = obj.get("parent_id")
    return StreamEvent(
        broker_id=str(obj["id"]),
        parent_id=str(parent) if parent not in (None, "", 0) else None,
        status=str(obj["status"]),
        exec_qty=_qty(obj.get("exec_quantity", obj.get("executed_quantity"))),
        avg_fill_price=float(obj.get("avg_fill_price") or 0.0),
        last_fill_qty=_qty(obj.get("last_fill_quantity")),
        last_fill_price=float(obj.get("last_fill_price") or 0.0),
        ts=to_ns(obj.get("transaction_date")),
        reason=obj.get("reason_description"),
        raw=obj,
    )


def _dec(value: Any) -> Decimal:
    return Decimal(str(value if value is not None else 0)).quantize(Decimal("0.000001"))


def account_snapshot(
    account_id: str, balances: dict[str, Any], positions: dict[str, Any], ts: int, session: str
) -> dict[str, Any]:
    b = balances.get("balances") or {}
    power = None
    for section in ("margin", "cash", "pdt"):
        part = b.get(section)
        if isinstance(part, dict):
            power = part.get("stock_buying_power", part.get("cash_available"))
            if power is not None:
                break
    return {
        "account_id": account_id,
        "ts": ts,
        "session": session,
        "cash": _dec(b.get("total_cash")),
        "equity": _dec(b.get("total_equity")),
        "unrealized_pnl": _dec(b.get("open_pl")),
        "realized_pnl": _dec(b.get("close_pl")),
        "buying_power": None if power is None else _dec(power),
        "positions": [
            {"symbol": str(p["symbol"]), "qty": _qty(p.get("quantity")), "cost_basis": _dec(p.get("cost_basis"))}
            for p in items(positions.get("positions"), "position")
        ],
    }
