"""Peer for `scalp bench streams`: a bare Faust agent over the same market topics, doing nothing per event.

Run as ``python -m benchmarks.faust_peer worker -l warn`` with ``SCALP_TOPIC_PREFIX`` (the pre-filled topics)
and ``FAUST_PEER_EVENTS`` (how many events to read) set. Same broker settings as `scalp streams` (raw keys and
values, in-memory store, events one by one without acknowledgement); the agent only counts. Prints
``faust peer: <n> events in <s> s`` from its first to its last event and exits: the ceiling of Faust's own
per-message path (fetcher, conductor, channel, stream) on this machine, which no work in an agent can beat.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import faust

from scalp.settings import load_settings
from schemas.topics import MARKET_QUOTES, MARKET_TRADES
from streams.settings import StreamsSettings
from streams.transport import App

STALL_S = 10.0


def build() -> faust.App:
    kafka = load_settings().kafka
    wanted = int(os.environ["FAUST_PEER_EVENTS"])
    app_id = f"{kafka.topic_prefix}faust-peer-{uuid.uuid4().hex[:6]}"
    app = App(
        app_id,
        datadir=Path(tempfile.gettempdir()) / f"{app_id}-data",  # not the working directory
        fetch_max_wait_ms=StreamsSettings().fetch_max_wait_ms,
        broker=f"kafka://{kafka.bootstrap_servers}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
    )
    market = app.topic(kafka.topic(MARKET_TRADES), kafka.topic(MARKET_QUOTES), internal=False)

    progress = {"seen": 0, "first": 0.0, "last": 0.0}

    def report(note: str = "") -> None:
        seconds = progress["last"] - progress["first"]
        print(f"faust peer: {progress['seen']:.0f} events in {seconds:.3f} s{note}", flush=True)
        os._exit(0)  # the measurement is done; Faust's shutdown would only add noise to the run's timing

    async def count(stream: Any) -> None:
        async for _event in stream.noack().events():
            now = time.perf_counter()
            if not progress["seen"]:
                progress["first"] = now
            progress["seen"] += 1
            progress["last"] = now
            if progress["seen"] >= wanted:
                break
        report()

    async def watch() -> None:
        # Faust now and then hands out a record past offsets it never delivers (an old fetch position; the
        # worker reads those directly, this peer does not): the count then stops short of the tape
        if progress["seen"] and time.perf_counter() - progress["last"] >= STALL_S:
            report(f" (stopped: no event for {STALL_S:.0f} s, {wanted - progress['seen']:.0f} never handed out)")

    app.agent(market, name="count")(count)
    app.timer(1.0)(watch)
    return app


if __name__ == "__main__":
    build().main()
