"""Drift: a replay's decisions against the live ones, record by record.

Records are paired by their natural key (features: symbol and ts; signals: id; risk decisions: signal
id; orders: id, last snapshot). A pair whose compared fields are all equal is a match; otherwise it
differs and the first differing field (in schema order) is named with both values. Records only live
has are *missing* from the replay; records only the replay has are *extra*. Stamps that say where a
record was computed rather than what it says (source commit, settings and policy digests, order
payload and status history, broker ids) are not compared field by field; the digests seen on each side
are listed in the report instead (a policy change shows there, and in the signal ids, which carry it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas.topics import FEATURES, ORDERS, RISK_DECISIONS, SIGNALS

KEYS: dict[str, tuple[str, ...]] = {
    FEATURES: ("symbol", "ts"),
    SIGNALS: ("id",),
    RISK_DECISIONS: ("signal_id",),
    ORDERS: ("id",),
}
NOT_COMPARED = frozenset(
    {"source_commit", "env_hash", "session_policy_digest", "payload", "status_history", "broker_order_id", "legs"}
)
STAMPS = ("session_policy_digest", "source_commit")


@dataclass
class TopicDrift:
    matched: int = 0
    differing: list[dict[str, Any]] = field(default_factory=list)
    missing: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.differing or self.missing or self.extra)


@dataclass
class DriftReport:
    topics: dict[str, TopicDrift]
    per_setup: dict[str, Counter[str]]
    stamps: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # stamp -> side -> values seen

    @property
    def clean(self) -> bool:
        return all(t.clean for t in self.topics.values())

    def to_dict(self, limit: int = 50) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "topics": {
                name: {
                    "matched": t.matched,
                    "differing": len(t.differing),
                    "missing": len(t.missing),
                    "extra": len(t.extra),
                    "first_differences": t.differing[:limit],
                    "first_missing": [list(k) for k in t.missing[:limit]],
                    "first_extra": [list(k) for k in t.extra[:limit]],
                }
                for name, t in self.topics.items()
            },
            "signals_per_setup": {s: dict(c) for s, c in sorted(self.per_setup.items())},
            "stamps": self.stamps,
        }


def _latest(records: list[dict[str, Any]], key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        k = tuple(record[f] for f in key)
        old = out.get(k)
        if old is None or record.get("ts", 0) >= old.get("ts", 0):
            out[k] = record
    return out


def _first_difference(live: dict[str, Any], replay: dict[str, Any]) -> tuple[str, Any, Any] | None:
    for name, value in live.items():
        if name in NOT_COMPARED:
            continue
        other = replay.get(name)
        if isinstance(value, float) and isinstance(other, float) and value != value and other != other:
            continue  # NaN == NaN here
        if _norm(value) != _norm(other):
            return name, value, other
    return None


def _norm(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if value is not None and type(value).__name__ == "Decimal":
        return str(value)
    return value


def compare(live: dict[str, list[dict[str, Any]]], replay: dict[str, list[dict[str, Any]]]) -> DriftReport:
    topics: dict[str, TopicDrift] = {}
    per_setup: dict[str, Counter[str]] = {}
    for topic, key in KEYS.items():
        a, b = _latest(live.get(topic, []), key), _latest(replay.get(topic, []), key)
        drift = TopicDrift()
        for k in sorted(a.keys() | b.keys(), key=repr):
            setup = (a.get(k) or b.get(k) or {}).get("setup") if topic == SIGNALS else None
            if k not in b:
                drift.missing.append(k)
                outcome = "missing"
            elif k not in a:
                drift.extra.append(k)
                outcome = "extra"
            else:
                diff = _first_difference(a[k], b[k])
                if diff is None:
                    drift.matched += 1
                    outcome = "matched"
                else:
                    name, lv, rv = diff
                    drift.differing.append({"key": list(k), "field": name, "live": lv, "replay": rv})
                    outcome = "differing"
            if setup is not None:
                per_setup.setdefault(setup, Counter())[outcome] += 1
        topics[topic] = drift
    stamps = {
        name: {
            side: sorted({str(r[name]) for r in records.get(FEATURES, []) if r.get(name) is not None})
            for side, records in (("live", live), ("replay", replay))
        }
        for name in STAMPS
    }
    return DriftReport(topics, per_setup, stamps)
