"""`scalp tune` as a function: a reviewed proposal for setup thresholds from an exported dataset, written next
to the live policy file and never over it, with its report (tune_report.md, tune.json) next to the dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from streams.core.errors import PolicyError

from .tune import (
    Search,
    SetupResult,
    TuneError,
    diff,
    load_dataset,
    load_rows,
    propose,
    read_space,
    report_json,
    report_markdown,
    tune,
    validate,
)


@dataclass(frozen=True)
class Tuned:
    results: list[SetupResult]
    report: Path  # tune_report.md


def run_tuning(path: Path, live: Path, proposed: Path, search: Search, space: Path | None = None) -> Tuned:
    """Tune on the dataset at ``path`` against the live policy ``live``; the proposal goes to ``proposed``."""
    if proposed.resolve() == live.resolve():
        raise TuneError(f"--proposed {proposed} is the live policy file; tune never writes it")
    live_text = live.read_text()
    try:
        policy = validate(live_text, str(live))
    except PolicyError as exc:
        raise TuneError(str(exc)) from None
    meta_file = path.with_name("dataset.meta.json")
    if meta_file.exists():
        made_with = json.loads(meta_file.read_text()).get("session_policy_digest")
        if made_with and made_with != policy.digest:
            raise TuneError(
                f"{path} was exported from a run with policy {made_with[:12]}, the live policy is "
                f"{policy.digest[:12]}: back-test with the live policy first"
            )
    if space is not None:
        search.space = read_space(yaml.safe_load(space.read_text()), str(space))
    data = load_dataset(load_rows(path))
    results, train, valid = tune(data, policy, search)
    header = [
        f"PROPOSED by `scalp tune` from {path} ({search.kind} search, objective {search.objective}); review, then copy",
        f"what you accept into {live}. Train days: {', '.join(train)}; validation days: {', '.join(valid)}.",
    ]
    text = propose(live_text, results, header)
    try:
        proposal = validate(text, str(proposed))
    except PolicyError as exc:
        raise TuneError(f"the proposal is not a valid policy ({exc}); nothing written") from None
    proposed.parent.mkdir(parents=True, exist_ok=True)
    proposed.write_text(text)
    changed = diff(live_text, text, str(live), str(proposed))
    info = {
        "dataset": str(path),
        "rows": data.rows,
        "unlabelled": data.unlabelled,
        "idle_days": list(data.idle_days),
        "policy_file": str(live),
        "policy_digest": policy.digest,
        "proposed_file": str(proposed),
        "proposed_digest": proposal.digest,
        "search": search.kind + (f" ({search.samples} draws, seed {search.seed})" if search.kind == "random" else ""),
        "objective": search.objective,
        "min_trades": search.min_trades,
        "diff": changed,
    }
    report = path.with_name("tune_report.md")
    report.write_text(report_markdown(results, train, valid, info))
    body = {**info, **report_json(results, train, valid)}
    path.with_name("tune.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
    return Tuned(results, report)
