"""A TCP proxy for fault tests: forwards to a target and can cut every live connection at once, or cut
one connection just as the server's reply carrying a marker passes (the reply is swallowed)."""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.cuts = 0
        self._marker = b""
        self._every = 0
        self._left = 0
        self._seen = 0
        self.swallowed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def cut_on_reply(self, marker: bytes, every: int, times: int) -> None:
        """Swallow every ``every``-th server reply chunk containing ``marker`` and cut that connection,
        ``times`` times (e.g. ``b"COMMIT\\x00"``: the server committed, the client never hears of it)."""
        with self._lock:
            self._marker, self._every, self._left, self._seen = marker, every, times, 0

    def _swallow(self, data: bytes) -> bool:
        with self._lock:
            if not self._left or self._marker not in data:
                return False
            self._seen += 1
            if self._seen % self._every:
                return False
            self._left -= 1
            self.swallowed += 1
            return True

    def _pipe(self, src: socket.socket, dst: socket.socket, from_server: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if from_server and self._swallow(data):
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._live.discard(src)
                self._live.discard(dst)

    def cut(self) -> int:
        """Abort every live connection (both directions); returns how many were cut."""
        with self._lock:
            live = list(self._live)
            self._live.clear()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            # shutdown wakes the pipe threads blocked in recv(); close alone would not (they hold the socket)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self.cuts += 1
        return len(live) // 2

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()
