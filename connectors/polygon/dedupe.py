"""What has been published, per (topic, symbol), for de-duplication and gap detection.

Keys: trades (exchange, trade id), quotes the SIP sequence number, bars the bar start. Keys are kept in
two generations per (topic, symbol): a new generation starts when the event time has moved ``window_ns``
past the start of the current one, and the generation before that is dropped. So a key is remembered
for at least ``window_ns`` of event time after it was added (and at most about twice that), at the cost
of one set insert per event: no per-event eviction. The price is up to about twice the keys a sliding
window would hold; sets, not dicts, make up for most of it (66 MB per million quote keys against 114 MB
with their times, measured here).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from schemas.topics import MARKET_QUOTES, MARKET_TRADES


def event_key(topic: str, record: dict[str, Any]) -> Hashable:
    if topic == MARKET_TRADES:
        return (record["exchange"], record["trade_id"])
    key: Hashable = record["seq"] if topic == MARKET_QUOTES else record["ts"]  # ints: no tuple to make
    return key


@dataclass
class SymbolTrack:
    keys: set[Hashable] = field(default_factory=set)  # current generation
    older: set[Hashable] = field(default_factory=set)  # the generation before
    since: int | None = None  # event time that started the current generation
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
        if track is None:
            return False
        key = event_key(topic, record)
        return key in track.keys or key in track.older

    def add(self, topic: str, record: dict[str, Any]) -> None:
        self.add_new(topic, record)

    def add_new(self, topic: str, record: dict[str, Any]) -> bool:
        """Remember ``record``; False (and nothing changes) if its key was already seen."""
        return self.add_key(topic, record["symbol"], event_key(topic, record), record["ts"], record.get("seq"))

    def add_key(self, topic: str, symbol: str, key: Hashable, ts: int, seq: int | None) -> bool:
        """add_new() for a record given by its parts (``key`` as event_key() makes it)."""
        tracks = self.tracks
        where = (topic, symbol)
        track = tracks.get(where)
        if track is None:
            track = tracks[where] = SymbolTrack()
        keys = track.keys
        if key in keys or key in track.older:
            return False
        since = track.since
        if since is None:
            track.since = ts
        elif ts - since > self.window_ns:
            track.older = keys
            keys = track.keys = set()
            track.since = ts
        keys.add(key)
        last_ts = track.last_ts
        if last_ts is None or ts > last_ts:
            track.last_ts = ts
        if seq is not None and (track.last_seq is None or seq > track.last_seq):
            track.last_seq = seq
        return True
