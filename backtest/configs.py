"""Digests back to configurations: `scalp config show DIGEST` and `scalp replay --config-from RUN`.

A digest (or an unambiguous prefix of 8 or more hex digits) is looked up in the replay runs' ``configs.json``
files, then the ``config_snapshots`` table, then the ``config_snapshots`` topic; each place is asked only
when the ones before it know nothing of the digest, and every snapshot found is checked against its digest.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kafkaio.errors import ConfigError, RetryableError
from streams.snapshots import RUN_FILE, Snapshot, SnapshotError, read_run_file, read_topic

from .workflow import Research

HEX = re.compile(r"[0-9a-f]{8,64}")
CACHE = ".configs"  # under the runs directory: resolved files a re-run reads


def _from_runs(runs: Path, prefix: str, notes: list[str]) -> Iterator[Snapshot]:
    for path in sorted(runs.glob(f"*/{RUN_FILE}")):
        try:
            yield from (s for s in read_run_file(path) if s.digest.startswith(prefix))
        except SnapshotError as exc:
            notes.append(f"skipped: {exc}")


def _from_table(research: Research, prefix: str, notes: list[str]) -> Iterator[Snapshot]:
    import psycopg

    from sinks.db import connect

    try:
        with connect(research.database) as conn:
            rows = conn.execute(
                "SELECT digest, kind, body FROM config_snapshots WHERE digest LIKE %s ORDER BY digest", (prefix + "%",)
            ).fetchall()
    except (psycopg.Error, RetryableError) as exc:  # unreachable, or not migrated yet: the topic may hold it
        notes.append(
            f"config_snapshots table not read: {exc if isinstance(exc, RetryableError) else type(exc).__name__}"
        )
        return
    for digest, kind, body in rows:
        yield Snapshot(digest, kind, body).checked("the config_snapshots table")


def _from_topic(research: Research, prefix: str) -> Iterator[Snapshot]:
    yield from (s for s in read_topic(research.kafka, research.serde) if s.digest.startswith(prefix))


def resolve(research: Research, runs: Path, digest: str, notes: list[str] | None = None) -> tuple[Snapshot, str]:
    """The snapshot of ``digest`` (or of the one digest it begins) and where it was found; ``notes`` gets what
    could not be asked (an unreachable database)."""
    said = notes if notes is not None else []
    wanted = digest.strip().lower()
    if not HEX.fullmatch(wanted):
        raise ConfigError(f"{digest!r} is not a digest (8 to 64 hex digits)")
    places: list[tuple[str, Callable[[Research, Path, str], Iterator[Snapshot]]]] = [
        (f"the runs in {runs}", lambda _r, out, p: _from_runs(out, p, said)),
        ("the config_snapshots table", lambda r, _o, p: _from_table(r, p, said)),
        ("the config_snapshots topic", lambda r, _o, p: _from_topic(r, p)),
    ]
    for where, find in places:
        found = {s.digest: s for s in find(research, runs, wanted)}
        if len(found) > 1:
            raise ConfigError(f"{digest!r} begins {len(found)} digests in {where}: give more of it")
        if found:
            return next(iter(found.values())), where
    raise SnapshotError(
        f"no config snapshot {digest!r} in {', '.join(w for w, _ in places)} (a streams worker publishes the "
        "configuration it runs with when it starts; a replay run keeps its own)"
    )


def rerun_research(research: Research, runs: Path, run_id: str) -> tuple[Research, Path]:
    """The research settings and the policy file run ``run_id`` ran with, from its digests: the policy, and
    of the settings what a replay uses (trade-condition table, paper broker, fees). Resolved files go to
    ``<runs>/.configs/``."""
    from execution.settings import FeeSettings, PaperSettings

    meta_file = runs / run_id / "run.json"
    if not meta_file.exists():
        raise ConfigError(f"--config-from: no run {run_id!r} at {runs} (run.json missing)")
    meta = json.loads(meta_file.read_text())
    policy, _ = resolve(research, runs, meta["session_policy_digest"])
    settings, _ = resolve(research, runs, meta["env_hash"])
    if (policy.kind, settings.kind) != ("policy", "settings"):
        raise ConfigError(f"run {run_id!r}: its digests resolve to {policy.kind} and {settings.kind} snapshots")
    body: dict[str, Any] = json.loads(settings.body)
    conditions, _ = resolve(research, runs, body["streams"]["conditions_file"])
    cache = runs / CACHE
    cache.mkdir(parents=True, exist_ok=True)
    policy_file = cache / f"policy-{policy.digest}.json"
    policy_file.write_text(policy.body)
    conditions_file = cache / f"conditions-{conditions.digest}.yaml"
    conditions_file.write_bytes(conditions.body.encode())
    execution = body["execution"]
    try:
        paper = PaperSettings.model_validate(execution["paper"])
        fees = FeeSettings.model_validate(execution["fees"])
    except ValueError as exc:
        raise ConfigError(f"run {run_id!r}: its settings snapshot no longer validates ({exc})") from None
    again = dataclasses.replace(
        research,
        conditions_file=conditions_file,
        paper=paper,
        fees=fees,
        settings_digest=settings.digest,
        settings_snapshot=settings.body,
    )
    return again, policy_file
