"""A local server that speaks Tradier's brokerage protocol (aiohttp, one port), for tests and dry runs.

REST under ``/v1`` (``Authorization: Bearer <token>``; JSON only when ``Accept: application/json``, as
Tradier, which defaults to XML; form-encoded bodies):
- ``POST /accounts/{id}/orders``: equity/option orders and advanced orders (oto, oco, otoco) with
  indexed legs, validated as Tradier documents them (an OTOCO entry must be limit/stop/stop_limit, legs
  2 and 3 same symbol with different types; tags of letters, digits and '-', at most 255);
  ``preview=true`` validates only. Replies ``{"order": {"id": N, "status": "ok"}}``; a refused request
  gets 400 ``{"errors": {"error": [...]}}``.
- ``GET /accounts/{id}/orders`` (``{"orders": "null"}`` when empty, a bare object for one order),
  ``GET|DELETE|PUT /accounts/{id}/orders/{order_id}``, ``GET /accounts/{id}/balances`` and ``/positions``.
- ``POST /accounts/events/session`` -> ``{"stream": {"url", "sessionid"}}``; one session at a time.
- Every reply carries ``X-Ratelimit-Allowed/Used/Available/Expiry``; past the allowance, 429.

WebSocket ``/v1/accounts/events``: the client sends ``{"events": ["order"], "sessionid": ...}`` and then
receives ``order`` events (``id, parent_id, status, avg_fill_price, exec_quantity, last_fill_quantity,
last_fill_price, remaining_quantity, transaction_date``) and heartbeats.

Test control under ``/_control`` (not Tradier's): ``fill`` (an execution on an order or a leg, with
OCO cancellation of the sibling exit), ``config`` (stream fills or not, duplicate events, reject the next
order, 429 the next N requests, answer the next submission with a 500 after creating the order),
``event`` (push a raw event, e.g. for an order that does not exist), ``drop_stream``, ``state``.

Run: ``python -m tests.servers.tradier --token T --account A`` prints
``READY http://127.0.0.1:PORT/v1 ws://127.0.0.1:PORT/v1/accounts/events`` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

TAG = re.compile(r"^[A-Za-z0-9-]{1,255}$")
CLASSES = {"equity", "option", "multileg", "combo", "oto", "oco", "otoco"}
SIDES = {
    "equity": {"buy", "buy_to_cover", "sell", "sell_short"},
    "option": {"buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"},
}
TYPES = {"market", "limit", "stop", "stop_limit"}
DURATIONS = {"day", "gtc", "pre", "post"}
TERMINAL = {"filled", "canceled", "rejected", "expired"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Refused(Exception):
    pass


@dataclass
class Order:
    id: int
    order_class: str
    symbol: str
    side: str
    qty: int
    order_type: str
    duration: str
    price: float | None
    stop: float | None
    tag: str | None
    option_symbol: str | None = None
    parent_id: int | None = None
    status: str = "open"
    exec_qty: int = 0
    avg_fill_price: float = 0.0
    last_fill_qty: int = 0
    last_fill_price: float = 0.0
    reason: str | None = None
    create_date: str = field(default_factory=_now)
    transaction_date: str = field(default_factory=_now)
    legs: list[Order] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.order_type,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": float(self.qty),
            "status": self.status,
            "duration": self.duration,
            "avg_fill_price": self.avg_fill_price,
            "exec_quantity": float(self.exec_qty),
            "last_fill_price": self.last_fill_price,
            "last_fill_quantity": float(self.last_fill_qty),
            "remaining_quantity": float(self.qty - self.exec_qty) if self.status not in TERMINAL else 0.0,
            "create_date": self.create_date,
            "transaction_date": self.transaction_date,
            "class": self.order_class,
        }
        if self.price is not None:
            out["price"] = self.price
        if self.stop is not None:
            out["stop_price"] = self.stop
        if self.option_symbol:
            out["option_symbol"] = self.option_symbol
        if self.tag:
            out["tag"] = self.tag
        if self.reason:
            out["reason_description"] = self.reason
        if self.legs:
            out.update(num_legs=len(self.legs), strategy=self.order_class, leg=[leg.body() for leg in self.legs])
        return out

    def event(self, account: str) -> dict[str, Any]:
        out = {
            "event": "order",
            "id": self.id,
            "status": self.status,
            "type": self.order_type,
            "price": self.price or 0.0,
            "stop_price": self.stop or 0.0,
            "avg_fill_price": self.avg_fill_price,
            "exec_quantity": float(self.exec_qty),
            "last_fill_quantity": float(self.last_fill_qty),
            "last_fill_price": self.last_fill_price,
            "remaining_quantity": float(self.qty - self.exec_qty) if self.status not in TERMINAL else 0.0,
            "transaction_date": self.transaction_date,
            "create_date": self.create_date,
            "account": account,
        }
        if self.parent_id is not None:
            out["parent_id"] = self.parent_id
        if self.reason:
            out["reason_description"] = self.reason
        return out


@dataclass
class Control:
    stream_fills: bool = True  # push fill events on the stream (False: fills only visible by polling)
    duplicate_events: bool = False  # every event sent twice
    reject_next: str | None = None  # the next order is accepted and then rejected with this reason
    rate_limit_next: int = 0  # the next N requests get 429
    ambiguous_next: int = 0  # the next N submissions create the order but answer 500
    hang_next_s: float = 0.0  # the next submission creates the order, then answers only after this long
    heartbeat_s: float = 60.0


class Broker:
    def __init__(self, token: str, account: str, allowed: int) -> None:
        self.token, self.account, self.allowed = token, account, allowed
        self.orders: dict[int, Order] = {}
        self.by_id: dict[int, Order] = {}  # orders and legs
        self.next_id = 1000
        self.control = Control()
        self.sockets: set[web.WebSocketResponse] = set()
        self.session_id: str | None = None
        self.session_deadline = 0.0
        self.window_start = time.time()
        self.used = 0
        self.submissions = 0
        self.requests: Counter[str] = Counter()
        self.cash = 100_000.0
        self.positions: dict[str, list[float]] = {}  # symbol -> [qty, cost basis]
        self.close_pl = 0.0
        self.base = ""

    # --- plumbing --------------------------------------------------------------------------------

    def _rate(self, reply: web.StreamResponse) -> None:
        now = time.time()
        if now - self.window_start >= 60:
            self.window_start, self.used = now, 0
        reply.headers["X-Ratelimit-Allowed"] = str(self.allowed)
        reply.headers["X-Ratelimit-Used"] = str(self.used)
        reply.headers["X-Ratelimit-Available"] = str(max(0, self.allowed - self.used))
        reply.headers["X-Ratelimit-Expiry"] = str(int((self.window_start + 60) * 1000))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_control") or request.path == "/v1/accounts/events":
            return await handler(request)  # type: ignore[no-any-return]
        self.requests[f"{request.method} {request.path}"] += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="Invalid Access Token")
        self.used += 1
        if self.control.rate_limit_next > 0 or self.used > self.allowed:
            self.control.rate_limit_next = max(0, self.control.rate_limit_next - 1)
            reply = web.Response(status=429, text="Rate limit exceeded")
            self._rate(reply)
            reply.headers["X-Ratelimit-Available"] = "0"
            reply.headers["X-Ratelimit-Expiry"] = str(int((time.time() + 0.3) * 1000))
            return reply
        if "application/json" not in request.headers.get("Accept", ""):
            return web.Response(text="<response><error>send Accept: application/json</error></response>")
        try:
            reply = await handler(request)
        except Refused as exc:
            reply = web.json_response({"errors": {"error": [str(exc)]}}, status=400)
        self._rate(reply)
        return reply

    def _account(self, request: web.Request) -> None:
        if request.match_info["account"] != self.account:
            raise Refused("Account id does not match the token")

    async def push(self, order: Order) -> None:
        event = json.dumps(order.event(self.account))
        for ws in list(self.sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(event)
                if self.control.duplicate_events:
                    await ws.send_str(event)

    # --- orders ----------------------------------------------------------------------------------

    def _leg(self, form: Any, i: int | None, cls: str) -> dict[str, Any]:
        def get(name: str) -> str | None:
            value = form.get(name if i is None else f"{name}[{i}]")
            return str(value) if value is not None else None

        symbol, side, qty, kind = get("symbol"), get("side"), get("quantity"), get("type")
        if not symbol or not side or not qty or not kind:
            raise Refused(f"leg {i}: symbol, side, quantity and type are required")
        option_symbol = get("option_symbol")
        sides = SIDES["option" if option_symbol or cls == "option" else "equity"]
        if side not in sides:
            raise Refused(f"leg {i}: invalid side {side}")
        if kind not in TYPES:
            raise Refused(f"leg {i}: invalid type {kind}")
        try:
            quantity = int(float(qty))
        except ValueError:
            raise Refused(f"leg {i}: invalid quantity") from None
        if quantity <= 0:
            raise Refused(f"leg {i}: quantity must be positive")
        price, stop = get("price"), get("stop")
        if kind in ("limit", "stop_limit") and price is None:
            raise Refused(f"leg {i}: a {kind} order needs price")
        if kind in ("stop", "stop_limit") and stop is None:
            raise Refused(f"leg {i}: a {kind} order needs stop")
        return {
            "symbol": symbol,
            "side": side,
            "qty": quantity,
            "order_type": kind,
            "price": float(price) if price is not None else None,
            "stop": float(stop) if stop is not None else None,
            "option_symbol": option_symbol,
        }

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _make(self, cls: str, leg: dict[str, Any], duration: str, tag: str | None, parent: int | None) -> Order:
        return Order(
            self._new_id(),
            cls,
            leg["symbol"],
            leg["side"],
            leg["qty"],
            leg["order_type"],
            duration,
            leg["price"],
            leg["stop"],
            tag,
            leg["option_symbol"],
            parent,
        )

    async def create(self, request: web.Request) -> web.Response:
        self._account(request)
        form = await request.post()
        cls, duration, tag = str(form.get("class") or ""), str(form.get("duration") or ""), form.get("tag")
        if cls not in CLASSES:
            raise Refused(f"invalid class {cls}")
        if duration not in DURATIONS:
            raise Refused(f"invalid duration {duration}")
        if tag is not None and not TAG.match(str(tag)):
            raise Refused("tag must be letters, digits and '-' (at most 255)")
        if cls in ("oto", "oco", "otoco"):
            legs = [self._leg(form, i, cls) for i in range(2 if cls != "otoco" else 3)]
            if cls == "otoco":
                if legs[0]["order_type"] == "market":
                    raise Refused("OTOCO: the first leg must be limit, stop or stop_limit")
                if legs[1]["symbol"] != legs[2]["symbol"] or legs[1]["order_type"] == legs[2]["order_type"]:
                    raise Refused("OTOCO: legs 2 and 3 need the same symbol and different types")
        else:
            legs = [self._leg(form, None, str(cls))]
        if str(form.get("preview") or "") == "true":
            cost = sum((leg["price"] or leg["stop"] or 0.0) * leg["qty"] for leg in legs[:1])
            return web.json_response(
                {"order": {"status": "ok", "commission": 0.0, "cost": cost, "class": cls, "result": True}}
            )
        self.submissions += 1
        head = legs[0]
        parent = self._make(cls, head, duration, str(tag) if tag else None, None)
        if len(legs) > 1:
            for i, leg in enumerate(legs):
                child = self._make(cls, leg, duration, None, parent.id)
                child.status = "open" if i == 0 else "pending"  # exits wait for the entry
                parent.legs.append(child)
                self.by_id[child.id] = child
        self.orders[parent.id] = parent
        self.by_id[parent.id] = parent
        if self.control.reject_next:
            parent.status, parent.reason = "rejected", self.control.reject_next
            for leg_order in parent.legs:
                leg_order.status = "rejected"
            self.control.reject_next = None
        await self.push(parent)
        if self.control.hang_next_s > 0:  # the order exists; the client is left waiting (killed meanwhile)
            hang, self.control.hang_next_s = self.control.hang_next_s, 0.0
            await asyncio.sleep(hang)
        if self.control.ambiguous_next > 0:
            self.control.ambiguous_next -= 1
            return web.Response(status=500, text="Internal Server Error")
        return web.json_response({"order": {"id": parent.id, "status": "ok", "partner_id": "local"}})

    async def list_orders(self, request: web.Request) -> web.Response:
        self._account(request)
        page = int(request.query.get("page", "1"))
        limit = int(request.query.get("limit", "100"))
        everything = [o.body() for o in self.orders.values()]
        chunk = everything[(page - 1) * limit : page * limit]
        if not chunk:
            return web.json_response({"orders": "null"})
        return web.json_response({"orders": {"order": chunk[0] if len(chunk) == 1 else chunk}})

    def _order(self, request: web.Request) -> Order:
        self._account(request)
        order = self.orders.get(int(request.match_info["order_id"]))
        if order is None:
            raise Refused("Order not found")
        return order

    async def get_order(self, request: web.Request) -> web.Response:
        return web.json_response({"order": self._order(request).body()})

    async def cancel(self, request: web.Request) -> web.Response:
        order = self._order(request)
        if order.status in TERMINAL:
            raise Refused("Order is not in a cancelable state")
        now = _now()
        for part in [*order.legs, order]:
            if part.status not in TERMINAL:
                part.status, part.transaction_date = "canceled", now
                await self.push(part)
        return web.json_response({"order": {"id": order.id, "status": "ok"}})

    async def modify(self, request: web.Request) -> web.Response:
        order = self._order(request)
        if order.status in TERMINAL:
            raise Refused("Order is not in a modifiable state")
        form = await request.post()
        if "price" in form:
            order.price = float(str(form["price"]))
        if "stop" in form:
            order.stop = float(str(form["stop"]))
        if "type" in form:
            order.order_type = str(form["type"])
        order.transaction_date = _now()
        await self.push(order)
        return web.json_response({"order": {"id": order.id, "status": "ok"}})

    async def balances(self, request: web.Request) -> web.Response:
        self._account(request)
        market_value = sum(cost for _, cost in self.positions.values())
        return web.json_response(
            {
                "balances": {
                    "account_number": self.account,
                    "account_type": "margin",
                    "total_cash": round(self.cash, 6),
                    "total_equity": round(self.cash + market_value, 6),
                    "open_pl": 0.0,
                    "close_pl": round(self.close_pl, 6),
                    "margin": {"stock_buying_power": round(2 * (self.cash + market_value), 6)},
                }
            }
        )

    async def positions_(self, request: web.Request) -> web.Response:
        self._account(request)
        held = [
            {"symbol": s, "quantity": float(q), "cost_basis": round(c, 6), "date_acquired": _now(), "id": i}
            for i, (s, (q, c)) in enumerate(sorted(self.positions.items()), 1)
            if q != 0
        ]
        if not held:
            return web.json_response({"positions": "null"})
        return web.json_response({"positions": {"position": held[0] if len(held) == 1 else held}})

    async def session(self, request: web.Request) -> web.Response:
        self.session_id = uuid.uuid4().hex
        self.session_deadline = time.time() + 300
        return web.json_response(
            {"stream": {"url": f"{self.base.replace('http', 'ws')}/accounts/events", "sessionid": self.session_id}}
        )

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            first = await ws.receive(timeout=10)
            body = json.loads(first.data) if first.type == WSMsgType.TEXT else {}
        except (TimeoutError, ValueError):
            body = {}
        if body.get("sessionid") != self.session_id or time.time() > self.session_deadline:
            await ws.send_str(json.dumps({"error": "invalid or expired session"}))
            await ws.close()
            return ws
        self.session_id = None  # a session serves one connection
        self.sockets.add(ws)
        beat = asyncio.create_task(self._heartbeat(ws))
        try:
            async for _ in ws:
                pass
        finally:
            beat.cancel()
            self.sockets.discard(ws)
        return ws

    async def _heartbeat(self, ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            while not ws.closed:
                await asyncio.sleep(self.control.heartbeat_s)
                await ws.send_str(json.dumps({"event": "heartbeat", "status": "active", "timestamp": int(time.time())}))

    # --- control ---------------------------------------------------------------------------------

    async def c_fill(self, request: web.Request) -> web.Response:
        body = await request.json()
        parent = self.orders[int(body["order_id"])]
        target = parent.legs[int(body["leg"])] if body.get("leg") is not None else parent
        qty, price = int(body["qty"]), float(body["price"])
        if target.status in TERMINAL:
            return web.json_response({"error": f"order {target.id} is {target.status}"}, status=409)
        now = _now()
        qty = min(qty, target.qty - target.exec_qty)
        target.avg_fill_price = round(
            (target.avg_fill_price * target.exec_qty + price * qty) / (target.exec_qty + qty), 6
        )
        target.exec_qty += qty
        target.last_fill_qty, target.last_fill_price = qty, price
        target.status = "filled" if target.exec_qty >= target.qty else "partially_filled"
        target.transaction_date = now
        self._book(target, qty, price)
        changed = [target]
        if parent.legs:
            entry, exits = parent.legs[0], parent.legs[1:]
            if target is entry:
                for leg in exits:
                    if leg.status == "pending":
                        leg.status, leg.transaction_date = "open", now
                        changed.append(leg)
            elif target.status == "filled":
                for leg in exits:
                    if leg is not target and leg.status not in TERMINAL:
                        leg.status, leg.transaction_date = "canceled", now
                        changed.append(leg)
            done = entry.status == "filled" and any(leg.status == "filled" for leg in exits)
            new = "filled" if done else "partially_filled"
            if parent.status != new:
                parent.status, parent.transaction_date = new, now
                changed.append(parent)
        if self.control.stream_fills:
            for order in changed:
                await self.push(order)
        return web.json_response({"ok": True, "filled": qty})

    def _book(self, order: Order, qty: int, price: float) -> None:
        buying = order.side.startswith("buy")
        symbol = order.option_symbol or order.symbol
        held, cost = self.positions.get(symbol, [0.0, 0.0])
        signed = qty if buying else -qty
        if held == 0 or (held > 0) == (signed > 0):
            held, cost = held + signed, cost + signed * price
        else:
            unit = cost / held
            self.close_pl += (price - unit) * min(abs(signed), abs(held)) * (1 if held > 0 else -1)
            held += signed
            cost = unit * held
        self.cash -= signed * price
        self.positions[symbol] = [held, cost]

    async def c_config(self, request: web.Request) -> web.Response:
        body = await request.json()
        for key, value in body.items():
            if not hasattr(self.control, key):
                return web.json_response({"error": f"unknown setting {key}"}, status=400)
            setattr(self.control, key, value)
        return web.json_response({"ok": True})

    async def c_event(self, request: web.Request) -> web.Response:
        raw = await request.text()
        for ws in list(self.sockets):
            await ws.send_str(raw)
        return web.json_response({"ok": True, "sockets": len(self.sockets)})

    async def c_drop(self, request: web.Request) -> web.Response:
        n = len(self.sockets)
        for ws in list(self.sockets):
            await ws.close()
        return web.json_response({"ok": True, "dropped": n})

    async def c_state(self, request: web.Request) -> web.Response:
        tags = Counter(o.tag for o in self.orders.values() if o.tag)
        return web.json_response(
            {
                "orders": [o.body() for o in self.orders.values()],
                "submissions": self.submissions,
                "tags": dict(tags),
                "positions": {symbol: qty for symbol, (qty, _) in self.positions.items()},
                "sockets": len(self.sockets),
                "requests": dict(self.requests),
            }
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        acct = "/v1/accounts/{account}"
        app.add_routes(
            [
                web.post(f"{acct}/orders", self.create),
                web.get(f"{acct}/orders", self.list_orders),
                web.get(f"{acct}/orders/{{order_id}}", self.get_order),
                web.delete(f"{acct}/orders/{{order_id}}", self.cancel),
                web.put(f"{acct}/orders/{{order_id}}", self.modify),
                web.get(f"{acct}/balances", self.balances),
                web.get(f"{acct}/positions", self.positions_),
                web.post("/v1/accounts/events/session", self.session),
                web.get("/v1/accounts/events", self.events),
                web.post("/_control/fill", self.c_fill),
                web.post("/_control/config", self.c_config),
                web.post("/_control/event", self.c_event),
                web.post("/_control/drop_stream", self.c_drop),
                web.get("/_control/state", self.c_state),
            ]
        )
        return app


async def serve(args: argparse.Namespace) -> None:
    broker = Broker(args.token, args.account, args.allowed)
    broker.control.heartbeat_s = args.heartbeat_s
    runner = web.AppRunner(broker.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    broker.base = f"http://{args.host}:{port}/v1"
    print(f"READY {broker.base} ws://{args.host}:{port}/v1/accounts/events", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Serve Tradier's brokerage REST and account-events protocols locally")
    p.add_argument("--token", required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--allowed", type=int, default=120, help="requests per minute (Tradier standard: 120)")
    p.add_argument("--heartbeat-s", type=float, default=60.0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()
