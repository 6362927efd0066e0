"""`--source features`: setups and risk re-run from the stored feature snapshots, so a policy change can be
evaluated over months after the ticks are gone (the plan's step 1: re-run the strategy logic offline from
``features``).

The snapshots come from the ``features`` topic, table or archive, each New York date from the first that
holds it (as ``--source auto`` does for ticks). They are only valid for a policy whose feature parameters
are those that computed them: each policy digest the snapshots carry is resolved to its policy (config
snapshots) and its ``features`` section compared with the replay's; a difference, or a digest that cannot
be resolved, is refused. Snapshots without the trade and quote times (written before the topic carried
them) are refused too: the staleness filters read those times. A snapshot stored twice (a worker that
restarted mid-session) is used once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kafkaio.errors import ConfigError
from schemas.topics import FEATURES

from .sources import FROM_FEATURES, Read
from .workflow import Progress, Research, read_market

SECTION = FEATURES  # the policy's feature parameters (its section of that name)


def read_features(
    env: Research, start: int | None, end: int | None, policy: Any, runs: Path, progress: Progress | None = None
) -> Read:
    """The snapshots of ``[start, end)`` that the replay can use with ``policy`` (ConfigError otherwise)."""
    read = read_market(env, "auto", start, end, (FEATURES,), progress)
    seen: set[tuple[str, int]] = set()
    kept: list[tuple[str, dict[str, Any]]] = []
    untimed: dict[str, int] = {}
    for topic, record in read.records:
        key = (record["symbol"], record["ts"])
        if key in seen:
            continue
        seen.add(key)
        if record.get("last_trade_ts") is None and record.get("last_quote_ts") is None:
            day = str(record["ts"] // 86_400_000_000_000)
            untimed[day] = untimed.get(day, 0) + 1
            continue
        kept.append((topic, record))
    if untimed:
        raise ConfigError(
            f"{sum(untimed.values())} feature snapshots in the range carry no trade or quote time (written before "
            "the features topic carried them); the staleness filters need them: replay those days from ticks"
        )
    check_feature_params(env, runs, {r["session_policy_digest"] for _, r in kept}, policy)
    return Read(kept, read.offsets, FROM_FEATURES, read.days)


def check_feature_params(env: Research, runs: Path, digests: set[str], policy: Any) -> None:
    """Refuse unless every policy behind ``digests`` computed features as ``policy`` would."""
    from .configs import resolve

    wanted = policy.model_dump(mode="json")[SECTION]
    for digest in sorted(digests):
        if digest == policy.digest:
            continue
        try:
            snapshot, _ = resolve(env, runs, digest)
        except ConfigError as exc:
            raise ConfigError(
                f"the feature snapshots were computed under policy {digest[:12]}, which cannot be resolved to check "
                f"its feature parameters against this policy's ({exc})"
            ) from None
        stored = json.loads(snapshot.body).get(SECTION)
        if stored != wanted:
            changed = sorted(k for k in set(stored or {}) | set(wanted) if (stored or {}).get(k) != wanted.get(k))
            raise ConfigError(
                f"the feature snapshots were computed under policy {digest[:12]} with other feature parameters "
                f"({', '.join(changed)}); replaying from them would not be this policy: replay from ticks"
            )
