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
from streams.settings import StreamsSettings
from streams.transport import App


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
    market = app.topic(kafka.topic("market_trades"), kafka.topic("market_quotes"), internal=False)

    async def count(stream: Any) -> None:
        seen, first = 0, 0.0
        async for _event in stream.noack().events():
            if not seen:
                first = time.perf_counter()
            seen += 1
            if seen >= wanted:
                break
        print(f"faust peer: {seen} events in {time.perf_counter() - first:.3f} s", flush=True)
        os._exit(0)  # the measurement is done; Faust's shutdown would only add noise to the run's timing

    app.agent(market, name="count")(count)
    return app


if __name__ == "__main__":
    build().main()
