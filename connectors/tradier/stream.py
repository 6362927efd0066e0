"""The Tradier account events stream, read on its own thread into a queue.

Each connection starts with a fresh session (``POST /accounts/events/session``, valid 5 minutes), then
sends ``{"events": ["order"], "sessionid": ...}``. Heartbeats are dropped; order events are put on the
queue as parsed :class:`StreamEvent` (a malformed one as a ``("bad", raw, reason)`` tuple). A closed or
failed connection is reopened with jittered backoff, forever, and a ``("reconnected", None, None)``
marker is queued so the router polls for anything the stream missed while it was down.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from kafkaio.retry import Backoff

from .parsing import stream_event
from .rest import TradierAuthError, TradierClient, TradierError

log = logging.getLogger("scalp.tradier.stream")


class AccountStream:
    def __init__(self, client: TradierClient, url: str, out: queue.Queue[tuple[str, Any, Any]]) -> None:
        self.client = client
        self.url = url
        self.out = out
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.connections = 0
        self.heartbeats = 0
        self.thread = threading.Thread(target=self._run, name="tradier-stream", daemon=True)
        self._ws: Any = None

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        ws = self._ws
        if ws is not None:
            ws.close()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        while not self.stop.is_set():
            try:
                sid = self.client.stream_session()
                with connect(self.url, open_timeout=10, close_timeout=2) as ws:
                    self._ws = ws
                    ws.send(json.dumps({"events": ["order"], "sessionid": sid, "excludeAccounts": []}))
                    self.connections += 1
                    if self.connections > 1:
                        self.out.put(("reconnected", None, None))
                    self.connected.set()
                    backoff.reset()
                    for message in ws:
                        self._message(message)
            except TradierAuthError:
                log.error("account stream: Tradier rejected the token; stream stopped (polling continues)")
                return
            except (OSError, TradierError, WebSocketException, TimeoutError) as exc:
                if self.stop.is_set():
                    return
                log.warning("account stream: %s; reconnecting", type(exc).__name__)
            finally:
                self._ws = None
                self.connected.clear()
            if not self.stop.is_set():
                self.stop.wait(backoff.next_delay())

    def _message(self, message: str | bytes) -> None:
        try:
            obj = json.loads(message)
        except ValueError:
            self.out.put(("bad", message, "not JSON"))
            return
        for event in obj if isinstance(obj, list) else [obj]:
            if not isinstance(event, dict):
                self.out.put(("bad", event, "not an object"))
                continue
            kind = event.get("event")
            if kind == "heartbeat":
                self.heartbeats += 1
                continue
            if kind != "order":
                continue
            try:
                self.out.put(("event", stream_event(event), None))
            except (KeyError, ValueError, TypeError) as exc:
                self.out.put(("bad", event, f"{type(exc).__name__}: {exc}"))
