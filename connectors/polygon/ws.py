"""The Polygon WebSocket reader: the `massive` WebSocketClient in its own thread, enqueueing raw frames.

The reader never parses or produces; it puts ``(receipt_ns, connection_no, frame)`` on an unbounded
queue so a slow broker can never make Polygon disconnect us as a slow consumer. The client is built with
``max_reconnects=0`` so every dropped session comes back here: we reconnect forever with jittered
backoff, logging each attempt, and the processor learns about the new connection from
``connection_no`` (that is where gaps are repaired). Failures to (re)establish a connection are retried
inside `websockets` with its own jittered backoff and logged by the ``websockets.client`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from massive import WebSocketClient
from massive.exceptions import AuthError
from websockets.exceptions import ConnectionClosedError, InvalidHandshake

from kafkaio.errors import ConfigError
from kafkaio.retry import Backoff

from .settings import PolygonSettings

log = logging.getLogger(__name__)

CHANNELS = ("T", "Q", "AM")


@dataclass(frozen=True)
class Frame:
    receipt_ns: int
    connection: int
    data: str | bytes


@dataclass(frozen=True)
class StreamEnded:
    """Put on the queue when the reader stops for good (stop(), session end or a fatal error)."""

    error: Exception | None = None


def split_ws_url(url: str) -> tuple[str, str, bool]:
    """wss://socket.massive.com/stocks -> ('socket.massive.com', 'stocks', True)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"POLYGON_WS_URL must be ws:// or wss://host[:port]/market, got {url!r}")
    market = parts.path.strip("/") or "stocks"
    return parts.netloc, market, parts.scheme == "wss"


class PolygonStream:
    def __init__(
        self,
        settings: PolygonSettings,
        symbols: list[str],
        out: queue.Queue[object],
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if settings.api_key is None:
            raise ConfigError("POLYGON_API_KEY (or MASSIVE_API_KEY) is not set")
        self.settings = settings
        self.symbols = symbols
        self.out = out
        self.clock_ns = clock_ns
        self.feed, self.market, self.secure = split_ws_url(settings.ws_url)
        self.subscriptions = [f"{ch}.{sym}" for sym in symbols for ch in CHANNELS]
        self.connections = 0
        self.frames = 0
        self.session_ended = False
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: WebSocketClient | None = None
        self._thread = threading.Thread(target=self._run, name="polygon-ws", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the socket and end the reader thread."""
        self._stop.set()
        loop, client = self._loop, self._client
        if loop is not None and client is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(client.close(), loop)
            try:
                future.result(timeout=timeout_s)
            except Exception as exc:  # already closed or loop gone
                log.debug("closing the Polygon socket: %s", exc)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        error: Exception | None = None
        try:
            asyncio.run(self._main())
        except Exception as exc:  # surfaced to the processor through StreamEnded
            error = exc
        self.out.put(StreamEnded(error))

    async def _on_frame(self, data: str | bytes) -> None:
        self.frames += 1
        self.out.put_nowait(Frame(self.clock_ns(), self.connections, data))
        if not self.session_ended and len(data) < 1024:
            marker = '"session_end"' if isinstance(data, str) else b'"session_end"'
            if marker in data:  # type: ignore[operator]
                self.session_ended = True  # synthetic sessions only: the server says it is done

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = Backoff(self.settings.reconnect_base_s, self.settings.reconnect_cap_s)
        if self.settings.api_key is None:
            raise ConfigError("POLYGON_API_KEY (or MASSIVE_API_KEY) is not set")
        while not self._stop.is_set():
            self._client = WebSocketClient(
                api_key=self.settings.api_key.get_secret_value(),
                feed=self.feed,
                market=self.market,
                raw=True,
                subscriptions=list(self.subscriptions),
                max_reconnects=0,
                secure=self.secure,
            )
            self.connections += 1
            frames_before = self.frames
            reason = "closed by the server"
            try:
                log.info("connecting to Polygon %s (connection %d)", self._client.url, self.connections)
                await self._client.connect(self._on_frame)
            except AuthError:
                raise ConfigError("Polygon rejected the API key") from None
            except (TimeoutError, ConnectionClosedError, InvalidHandshake, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set() or self.session_ended:
                return
            if self.frames != frames_before:
                backoff.reset()  # the session delivered data: start the backoff again from the bottom
            delay = backoff.next_delay()
            log.warning(
                "Polygon stream disconnected (%s); reconnect attempt %d in %.2fs", reason, backoff.attempt, delay
            )
            await asyncio.sleep(delay)
