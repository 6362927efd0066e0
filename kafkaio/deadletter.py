"""Dead letters: the original bytes of a record that cannot be taken, sent to ``<topic>.dlq``.

The headers name why and where it came from: ``error`` (the reason), ``source_topic`` (physical name),
and, for a record read from Kafka, ``source_partition`` and ``source_offset``. Headers the original
message carried come first; any extra headers (a connection id, say) last.

A dead letter must always fit in a Kafka message, whatever arrived: a body longer than the limit
(``kafka.dead_letter_max_bytes``) keeps its first bytes, with ``original_size`` (bytes) and
``truncated=true`` in the headers; a reason is cut at :data:`MAX_REASON` characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Headers = list[tuple[str, Any]]
MAX_REASON = 2000


def fit(raw: bytes, limit: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(the body to send, headers saying it was cut): ``raw`` itself when it fits in ``limit`` bytes."""
    if len(raw) <= limit:
        return raw, []
    return raw[:limit], [("original_size", str(len(raw)).encode()), ("truncated", b"true")]


def headers(
    reason: str,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
    *,
    original: Any = (),
    extra: Sequence[tuple[str, bytes]] = (),
) -> Headers:
    """The headers of a dead letter (see the module docstring)."""
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    out: Headers = [*original, ("error", reason.encode()), ("source_topic", source_topic.encode())]
    if partition is not None:
        out.append(("source_partition", str(partition).encode()))
    if offset is not None:
        out.append(("source_offset", str(offset).encode()))
    out.extend(extra)
    return out


def reason_of(exc: BaseException) -> str:
    """The ``error`` header of a record that raised ``exc``."""
    return f"{type(exc).__name__}: {exc}"


def header(message_headers: Sequence[tuple[str, Any]] | None, name: str) -> str | None:
    """A header of a dead letter as text (None when absent)."""
    for key, value in message_headers or ():
        if key == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None
