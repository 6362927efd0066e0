"""Deterministic faults of the synthetic Polygon-protocol server (for tests): where the WebSocket is cut and
how many events the outage loses, duplicated, reordered, malformed and unknown events, REST outages and
rate limits; and what the server sent, dropped and changed."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TEN_YEARS_MS = 3652 * 86_400_000


@dataclass
class Faults:
    disconnect_after: list[int] = field(default_factory=list)  # event counts at which to cut the socket
    drop_events: int = 0  # events lost after each cut (as a real outage would lose them)
    duplicate_every: int = 0  # send every K-th trade twice
    reorder_every: int = 0  # swap every K-th pair of adjacent events
    malformed_every: int = 0  # strip the price from every K-th trade
    unknown_every: int = 0  # inject an unknown event type and an unsubscribed symbol
    rest_fail: int = 0  # first N REST requests -> 503
    rest_429: int = 0  # next N REST requests -> 429 with Retry-After
    future_every: int = 0  # stamp every K-th trade ten years ahead (a venue clock outlier)
    garbage_after: int = 0  # once this many events are sent, send one frame that is not JSON...
    garbage_bytes: int = 1_000_000  # ...of this many bytes

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--disconnect-after", default="", help="comma-separated event counts")
        p.add_argument("--drop-events", type=int, default=0)
        p.add_argument("--duplicate-every", type=int, default=0)
        p.add_argument("--reorder-every", type=int, default=0)
        p.add_argument("--malformed-every", type=int, default=0)
        p.add_argument("--unknown-every", type=int, default=0)
        p.add_argument("--rest-fail", type=int, default=0)
        p.add_argument("--rest-429", type=int, default=0)
        p.add_argument("--future-every", type=int, default=0, help="stamp every K-th trade ten years ahead")
        p.add_argument("--garbage-after", type=int, default=0, help="send one frame that is not JSON after N events")
        p.add_argument("--garbage-bytes", type=int, default=1_000_000)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Faults:
        return cls(
            [int(x) for x in args.disconnect_after.split(",") if x],
            args.drop_events,
            args.duplicate_every,
            args.reorder_every,
            args.malformed_every,
            args.unknown_every,
            args.rest_fail,
            args.rest_429,
            args.future_every,
            args.garbage_after,
            args.garbage_bytes,
        )


@dataclass
class Stats:
    sent: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    duplicated: int = 0
    malformed: int = 0
    future: int = 0
    garbage: int = 0
    disconnects: int = 0
    connections: int = 0
    rest_requests: int = 0
    dropped_trade_ids: list[str] = field(default_factory=list)


def apply_faults(f: Faults, stats: Stats, frame: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The frame of events numbered from ``count + 1`` as the faults make it (malformed, duplicated,
    injected unknown and reordered events), counted in ``stats``."""
    out: list[dict[str, Any]] = []
    for i, event in enumerate(frame):
        n = count + i + 1
        if f.malformed_every and event["ev"] == "T" and n % f.malformed_every == 0:
            event = {k: v for k, v in event.items() if k != "p"}
            stats.malformed += 1
        elif f.future_every and event["ev"] == "T" and n % f.future_every == 0:
            event = {**event, "t": event["t"] + TEN_YEARS_MS}
            stats.future += 1
        out.append(event)
        if f.duplicate_every and event["ev"] == "T" and n % f.duplicate_every == 0:
            out.append(dict(event))
            stats.duplicated += 1
        if f.unknown_every and n % f.unknown_every == 0:
            out.append({"ev": "LULD", "T": event.get("sym"), "h": 1.0, "l": 0.5, "_inject": True})
            out.append(
                {
                    "ev": "T",
                    "sym": "ZZZZ",
                    "i": "1",
                    "x": 4,
                    "p": 1.0,
                    "s": 1,
                    "c": [],
                    "q": 1,
                    "t": event.get("t", 0),
                    "z": 3,
                    "_inject": True,
                }
            )
    if f.reorder_every:
        for i in range(0, len(out) - 1):
            if (
                (count + i + 1) % f.reorder_every == 0
                and out[i]["ev"] == out[i + 1]["ev"] != "AM"
                and out[i].get("sym") == out[i + 1].get("sym")
            ):
                out[i], out[i + 1] = out[i + 1], out[i]
    return out
