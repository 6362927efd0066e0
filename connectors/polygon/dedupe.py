"""What has been published, per (topic, symbol), for de-duplication and gap detection.

Keys: trades (exchange, trade id), quotes the SIP sequence number, bars the bar start. Keys are kept
for ``window_ns`` of event time behind the newest event of the symbol.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


def event_key(topic: str, record: dict[str, Any]) -> tuple[Any, ...]:
    if topic == "market_trades":
        return (record["exchange"], record["trade_id"])
    if topic == "market_quotes":
        return (record["seq"],)
    return (record["ts"],)


@dataclass
class SymbolTrack:
    keys: dict[tuple[Any, ...], int] = field(default_factory=dict)  # key -> ts
    order: deque[tuple[int, tuple[Any, ...]]] = field(default_factory=deque)
    last_ts: int | None = None
    last_seq: int | None = None


class SeenIndex:
    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.tracks: dict[tuple[str, str], SymbolTrack] = {}

    def track(self, topic: str, symbol: str) -> SymbolTrack:
        key = (topic, symbol)
        found = self.tracks.get(key)
        if found is None:
            found = self.tracks[key] = SymbolTrack()
        return found

    def seen(self, topic: str, record: dict[str, Any]) -> bool:
        track = self.tracks.get((topic, record.get("symbol", "")))
        return track is not None and event_key(topic, record) in track.keys

    def forget(self, topic: str, record: dict[str, Any]) -> None:
        """Undo add_new() for a record that could not be published (its key may come again)."""
        track = self.tracks.get((topic, record["symbol"]))
        if track is not None:
            track.keys.pop(event_key(topic, record), None)

    def add(self, topic: str, record: dict[str, Any]) -> None:
        self.add_new(topic, record)

    def add_new(self, topic: str, record: dict[str, Any]) -> bool:
        """Remember ``record``; False (and nothing changes) if its key was already seen."""
        tracks = self.tracks
        where = (topic, record["symbol"])
        track = tracks.get(where)
        if track is None:
            track = tracks[where] = SymbolTrack()
        key = event_key(topic, record)
        keys = track.keys
        if key in keys:
            return False
        ts = record["ts"]
        keys[key] = ts
        order = track.order
        order.append((ts, key))
        last_ts = track.last_ts
        if last_ts is None or ts > last_ts:
            last_ts = track.last_ts = ts
        seq = record.get("seq")
        if seq is not None and (track.last_seq is None or seq > track.last_seq):
            track.last_seq = seq
        horizon = last_ts - self.window_ns
        while order and order[0][0] < horizon:
            old_ts, old_key = order.popleft()
            if keys.get(old_key) == old_ts:
                del keys[old_key]
        return True
