"""A local server that speaks Polygon's protocol for a synthetic session (aiohttp, one port).

WebSocket ``/stocks``: ``connected`` status, ``{"action":"auth"}`` -> ``auth_success`` / ``auth_failed``,
``{"action":"subscribe","params":"T.SPY,Q.SPY,AM.SPY"}`` -> ``success`` per channel, then JSON arrays of
events for the subscribed channels. The session clock advances only while a client is subscribed, at
``speed`` times real time or as fast as the client reads (``speed=None``). When the window is over the
server sends ``{"ev":"status","status":"session_end"}`` (an extension: the real feed never ends) and
closes normally.

REST: ``/v3/trades/{t}``, ``/v3/quotes/{t}`` (timestamp.gte/gt/lte/lt in ns, order, limit <= 50000,
``next_url`` cursors), ``/v2/aggs/ticker/{t}/range/1/minute/{from}/{to}``, and
``/v3/snapshot/options/{u}`` (expiration_date, strike_price.gte/lte, contract_type, limit <= 250; ``as_of``
ns is an extension for reproducible sessions). The key is accepted as ``Authorization: Bearer`` or
``apiKey``; a wrong key gets 401 ``{"status":"ERROR","error":"Unknown API Key"}``.

Faults for tests (all deterministic): drop the connection abruptly after N events and lose the next M
(``disconnect_after``/``drop_events``), send every K-th trade twice, swap every K-th pair of events,
strip the price from every K-th trade, inject unknown event types and symbols, answer the first REST
requests with 503 or 429.

Run: ``python -m connectors.synthetic.server --date 2026-11-20 --api-key K`` prints
``READY ws://127.0.0.1:PORT/stocks http://127.0.0.1:PORT`` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from .faults import Faults, Stats, apply_faults
from .generator import Session
from .options import chain
from .wire import MS

log = logging.getLogger("synthetic.server")


class PolygonProtocolServer:
    def __init__(
        self,
        session: Session,
        api_key: str,
        speed: float | None = None,
        faults: Faults | None = None,
        frame_events: int = 500,
    ) -> None:
        self.session = session
        self.api_key = api_key
        self.speed = speed
        self.faults = faults or Faults()
        self.frame_events = frame_events
        self.stats = Stats()
        self.events = session.stream()
        self.position_ns = session.times.start_ns  # the session clock (last event time sent)
        self.finished = False
        self._held: list[dict[str, Any]] = []  # events taken from the stream but not sent yet
        self._pending_cuts = sorted(self.faults.disconnect_after)
        self._lock = asyncio.Lock()

    # --- REST ------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        key = header.removeprefix("Bearer ") if header.startswith("Bearer ") else request.query.get("apiKey")
        return key == self.api_key

    def _rest_fault(self) -> web.Response | None:
        self.stats.rest_requests += 1
        n = self.stats.rest_requests
        if n <= self.faults.rest_fail:
            return web.json_response({"status": "ERROR", "error": "synthetic outage"}, status=503)
        if n <= self.faults.rest_fail + self.faults.rest_429:
            return web.json_response(
                {"status": "ERROR", "error": "rate limited"}, status=429, headers={"Retry-After": "1"}
            )
        return None

    def _guard(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return web.json_response(
                {"status": "ERROR", "request_id": "synthetic", "error": "Unknown API Key"}, status=401
            )
        return self._rest_fault()

    @staticmethod
    def _bounds(query: Any) -> tuple[int, int]:
        gte, lte = 0, 2**62
        if "timestamp.gte" in query:
            gte = int(query["timestamp.gte"])
        if "timestamp.gt" in query:
            gte = int(query["timestamp.gt"]) + 1
        if "timestamp.lte" in query:
            lte = int(query["timestamp.lte"])
        if "timestamp.lt" in query:
            lte = int(query["timestamp.lt"]) - 1
        if "timestamp" in query:
            value = query["timestamp"]
            if "-" in value:
                day = dt.date.fromisoformat(value)
                gte = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9
                lte = gte + 86_400 * 10**9 - 1
            else:
                gte = lte = int(value)
        return gte, lte

    async def ticks(self, request: web.Request) -> web.Response:
        refused = self._guard(request)
        if refused is not None:
            return refused
        kind = "T" if request.match_info["kind"] == "trades" else "Q"
        ticker = request.match_info["ticker"].upper()
        query = dict(request.query)
        if "cursor" in query:
            query = json.loads(base64.urlsafe_b64decode(query["cursor"].encode()))
        limit = min(int(query.get("limit", 1000)), 50_000)
        gte, lte = self._bounds(query)
        skip = int(query.get("skip", 0))  # rows at exactly gte already returned by earlier pages
        rows = self.session.iter_rest_events(ticker, kind, gte, lte) if ticker in self.session.plans else iter(())
        if query.get("order", "asc") == "desc":
            ordered = list(rows)
            ordered.reverse()
            page = ordered[skip : skip + limit + 1]
            following = {"skip": str(skip + limit)}
        else:
            page = []
            for n, row in enumerate(rows):
                if n < skip:
                    continue
                page.append(row)
                if len(page) > limit:
                    break
            following = {}
            if len(page) > limit:
                last = page[limit - 1]["sip_timestamp"]
                same = sum(1 for r in page[:limit] if r["sip_timestamp"] == last) + (skip if last == gte else 0)
                following = {"timestamp.gte": str(last), "skip": str(same)}
        body: dict[str, Any] = {"results": page[:limit], "status": "OK", "request_id": "synthetic"}
        if len(page) > limit:
            nxt = {k: v for k, v in query.items() if k not in ("timestamp.gt", "skip")}
            nxt.update(following)
            cursor = base64.urlsafe_b64encode(json.dumps(nxt).encode()).decode()
            body["next_url"] = f"{request.url.origin()}{request.path}?cursor={cursor}"
        return web.json_response(body)

    async def aggs(self, request: web.Request) -> web.Response:
        refused = self._guard(request)
        if refused is not None:
            return refused
        ticker = request.match_info["ticker"].upper()
        if request.match_info["mult"] != "1" or request.match_info["span"] != "minute":
            return web.json_response({"status": "ERROR", "error": "only 1/minute is synthesised"}, status=400)

        def ms(value: str, end: bool) -> int:
            if "-" in value:
                day = dt.date.fromisoformat(value)
                start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1000
                return start + (86_400_000 - 1 if end else 0)
            return int(value)

        lo, hi = ms(request.match_info["from"], False), ms(request.match_info["to"], True)
        rows = self.session.rest_bars(ticker, lo, hi) if ticker in self.session.plans else []
        if request.query.get("sort") == "desc":
            rows.reverse()
        return web.json_response(
            {
                "ticker": ticker,
                "queryCount": len(rows),
                "resultsCount": len(rows),
                "adjusted": True,
                "results": rows,
                "status": "OK",
                "request_id": "synthetic",
                "count": len(rows),
            }
        )

    async def options(self, request: web.Request) -> web.Response:
        refused = self._guard(request)
        if refused is not None:
            return refused
        underlying = request.match_info["underlying"].upper()
        query = dict(request.query)
        if "cursor" in query:
            query = json.loads(base64.urlsafe_b64decode(query["cursor"].encode()))
        as_of = int(query.get("as_of", self.position_ns))
        if underlying not in self.session.plans:
            return web.json_response({"results": [], "status": "OK", "request_id": "synthetic"})
        day = self.session.times.date
        if "expiration_date" in query:
            expiries = [dt.date.fromisoformat(query["expiration_date"])]
        else:
            expiries = [day + dt.timedelta(days=d) for d in (0, 1, 2, 3, 4, 7, 14, 28)]
        rows = chain(
            underlying,
            self.session.mid_at(underlying, as_of),
            as_of,
            expiries,
            self.session.seed,
            float(query["strike_price.gte"]) if "strike_price.gte" in query else None,
            float(query["strike_price.lte"]) if "strike_price.lte" in query else None,
            query.get("contract_type"),
        )
        limit = min(int(query.get("limit", 10)), 250)
        offset = int(query.get("offset", 0))
        body: dict[str, Any] = {"results": rows[offset : offset + limit], "status": "OK", "request_id": "synthetic"}
        if offset + limit < len(rows):
            cursor = base64.urlsafe_b64encode(
                json.dumps({**query, "as_of": str(as_of), "offset": str(offset + limit)}).encode()
            ).decode()
            body["next_url"] = f"{request.url.origin()}{request.path}?cursor={cursor}"
        return web.json_response(body)

    async def stats_handler(self, request: web.Request) -> web.Response:
        s = self.stats
        return web.json_response(
            {
                "sent": dict(s.sent),
                "dropped": dict(s.dropped),
                "duplicated": s.duplicated,
                "malformed": s.malformed,
                "future": s.future,
                "garbage": s.garbage,
                "disconnects": s.disconnects,
                "connections": s.connections,
                "rest_requests": s.rest_requests,
                "finished": self.finished,
                "position_ns": self.position_ns,
                "dropped_trade_ids": s.dropped_trade_ids,
            }
        )

    # --- WebSocket -------------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        self.stats.connections += 1
        await ws.send_str(json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]))
        channels: set[str] = set()
        streaming: asyncio.Task[None] | None = None
        authed = False
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    action = json.loads(msg.data)
                except ValueError:
                    await ws.send_str(json.dumps([{"ev": "status", "status": "error", "message": "bad json"}]))
                    continue
                if action.get("action") == "auth":
                    if action.get("params") != self.api_key:
                        await ws.send_str(
                            json.dumps([{"ev": "status", "status": "auth_failed", "message": "authentication failed"}])
                        )
                        await ws.close()
                        break
                    authed = True
                    await ws.send_str(
                        json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}])
                    )
                elif action.get("action") in ("subscribe", "unsubscribe") and authed:
                    replies = []
                    for channel in str(action.get("params", "")).split(","):
                        channel = channel.strip()
                        if not channel:
                            continue
                        sym = channel.split(".", 1)[-1]
                        if sym not in self.session.plans:
                            replies.append({"ev": "status", "status": "error", "message": f"unknown ticker: {channel}"})
                            continue
                        if action["action"] == "subscribe":
                            channels.add(channel)
                            replies.append(
                                {"ev": "status", "status": "success", "message": f"subscribed to: {channel}"}
                            )
                        else:
                            channels.discard(channel)
                            replies.append(
                                {"ev": "status", "status": "success", "message": f"unsubscribed to: {channel}"}
                            )
                    await ws.send_str(json.dumps(replies))
                    if channels and streaming is None:
                        streaming = asyncio.create_task(self._stream(ws, channels, request))
        finally:
            if streaming is not None:
                streaming.cancel()
        return ws

    def _next_frame(self) -> list[dict[str, Any]]:
        frame: list[dict[str, Any]] = []
        while len(frame) < self.frame_events:
            if self._held:
                frame.append(self._held.pop(0))
                continue
            event = next(self.events, None)
            if event is None:
                break
            frame.append(event)
            if frame[0].get("t", frame[0].get("e", 0)) + 100 < event.get("t", event.get("e", 0)):
                break
        return frame

    async def _stream(self, ws: web.WebSocketResponse, channels: set[str], request: web.Request) -> None:
        async with self._lock:  # one streaming connection at a time owns the session clock
            wall_start = time.monotonic()
            session_start = self.position_ns
            count = sum(self.stats.sent.values())
            while not ws.closed:
                frame = self._next_frame()
                if not frame:
                    self.finished = True
                    await ws.send_str(
                        json.dumps([{"ev": "status", "status": "session_end", "message": "synthetic session complete"}])
                    )
                    await ws.close()
                    return
                out = apply_faults(self.faults, self.stats, frame, count)
                last = frame[-1]
                self.position_ns = last.get("t", last.get("e", 0)) * MS
                if self.speed:
                    due = wall_start + (self.position_ns - session_start) / 1e9 / self.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                selected = [e for e in out if f"{e['ev']}.{e.get('sym')}" in channels or e.get("_inject")]
                for e in selected:
                    e.pop("_inject", None)
                cut = self._pending_cuts and count + len(frame) >= self._pending_cuts[0]
                if cut:
                    keep = self._pending_cuts.pop(0) - count
                    selected = [e for e in out[:keep] if f"{e['ev']}.{e.get('sym')}" in channels]
                    if selected:
                        await ws.send_str(json.dumps(selected, separators=(",", ":")))
                    for e in selected:
                        self.stats.sent[e["ev"]] += 1
                    lost = out[keep:] + self._take(self.faults.drop_events)
                    for e in lost:
                        self.stats.dropped[e["ev"]] += 1
                        if e["ev"] == "T":
                            self.stats.dropped_trade_ids.append(e["i"])
                    self.stats.disconnects += 1
                    transport = request.transport
                    if transport is not None:
                        transport.abort()  # no close frame: the client sees an abnormal closure
                    return
                count += len(frame)
                if selected:
                    await ws.send_str(json.dumps(selected, separators=(",", ":")))
                for e in selected:
                    self.stats.sent[e["ev"]] += 1
                if self.faults.garbage_after and not self.stats.garbage and count >= self.faults.garbage_after:
                    await ws.send_str("<" * self.faults.garbage_bytes)  # not JSON, and large
                    self.stats.garbage += 1
                await asyncio.sleep(0)

    def _take(self, n: int) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        while len(taken) < n:
            if self._held:
                taken.append(self._held.pop(0))
                continue
            event = next(self.events, None)
            if event is None:
                break
            taken.append(event)
        return taken

    # --- app -------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/stocks", self.websocket)
        app.router.add_get("/v3/{kind:trades|quotes}/{ticker}", self.ticks)
        app.router.add_get("/v2/aggs/ticker/{ticker}/range/{mult}/{span}/{from}/{to}", self.aggs)
        app.router.add_get("/v3/snapshot/options/{underlying}", self.options)
        app.router.add_get("/_synthetic/stats", self.stats_handler)
        return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serve a synthetic session over Polygon's WebSocket and REST protocols")
    p.add_argument("--date", required=True, type=dt.date.fromisoformat)
    p.add_argument("--symbols", default="SPY,QQQ")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="HH:MM US/Eastern (default 04:00)")
    p.add_argument("--end", help="HH:MM US/Eastern (default the end of extended hours)")
    p.add_argument("--api-key", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--speed", type=float, default=None, help="times real time (default: as fast as read)")
    p.add_argument("--bursts", type=int, default=0, help="minutes of ten times the activity (seeded)")
    Faults.add_arguments(p)
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    session = Session(args.date, args.symbols.split(","), args.seed, args.start, args.end, args.bursts)
    faults = Faults.from_args(args)
    server = PolygonProtocolServer(session, args.api_key, args.speed, faults)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY ws://{args.host}:{port}/stocks http://{args.host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
