"""Settings of the Faust worker (`scalp streams`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from streams.core.conditions import CONDITIONS_FILE
from streams.core.policy import POLICY_FILE


class StreamsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str = "scalp-streams"  # consumer group and prefix of the state topics (after SCALP_TOPIC_PREFIX)
    policy_file: Path = POLICY_FILE
    # Polygon's trade-condition rules: which trades set prices, highs/lows and volume (streams, replay and the
    # rollup of `scalp db maintain`); the packaged table unless a file of that name sits next to $SCALP_CONFIG
    conditions_file: Path = CONDITIONS_FILE
    # state in the changelog written before the versioned encoding (pickled): "refuse" (a worker never
    # unpickles what it reads from Kafka), or "migrate" for one run, to take a trusted worker's old state
    # once; it is written back in the new encoding at the next checkpoint
    legacy_state: Literal["refuse", "migrate"] = "refuse"
    take_max: int = Field(default=5000, gt=0)  # risk inputs per batch (Faust stream.take_events)
    take_within_s: float = Field(default=0.2, gt=0)  # ...or this long, whichever comes first
    # the event-time merge of a symbol's trades and quotes waits for a quiet stream until that stream's
    # partition (other symbols' inputs) is this far past in venue time; an input older than that when it
    # comes is late and not applied (streams/core/merge.py). What a quiet symbol's features lag, at most
    merge_grace_ms: int = Field(default=1000, ge=0)
    # a worker that has read all its input and had none for this long (wall clock) releases what its merges
    # hold and marks its partitions done for the risk order (the end of input)
    idle_ms: int = Field(default=1000, gt=0)
    web_port: int = Field(default=0, ge=0)  # Faust's own web server; 0 disables it
    http_port: int = Field(default=9465, ge=0)  # our /metrics and /healthz; 0 disables
    http_host: str = "127.0.0.1"
    commit_interval_s: float = Field(default=1.0, gt=0)
    session_timeout_s: float = Field(default=10.0, ge=6.0)  # consumer group session (a dead worker's partitions move)
    # state is written to the changelog (and the inputs it holds acknowledged) at most this often
    checkpoint_interval_ms: int = Field(default=1000, gt=0)
    # longest a fetch waits on the broker for new data (Faust's fixed 1500 ms held every input up to 1.5 s:
    # streams/transport.py)
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=1500)
    # risk-order progress markers (streams/riskorder.py) go out after a fetch that sent a risk input, when the
    # worker goes idle, and otherwise at most this often (wall clock, which paces them only: the order they
    # produce is by event time); 0 sends them after every fetch
    progress_interval_ms: int = Field(default=50, ge=0)
    # longest fetched records not taken yet (a changelog's, which Faust never takes) hold back the next fetch
    # from their broker (aiokafka's 100 ms stalled every input: streams/transport.py)
    prefetch_backoff_ms: int = Field(default=5, ge=1, le=1000)
    # the garbage collector's thresholds (generations 0, 1, 2) once the start-up objects are frozen (see
    # Streams._on_assigned). Python's 700/10/10 ran a full collection about every 0.4 s while the event-time
    # merge held many inputs, 50-70 ms each: a fifth of the worker's time (docs/streams.md)
    gc_thresholds: tuple[PositiveInt, PositiveInt, PositiveInt] = (5000, 50, 1000)
    # with those thresholds a full collection hardly ever comes by itself: one this often (wall clock) reclaims
    # reference cycles that reached the oldest generation; 0 leaves it to the thresholds
    gc_full_interval_s: float = Field(default=300.0, ge=0)
