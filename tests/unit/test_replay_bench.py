"""`scalp bench replay`'s runs in a fresh interpreter per build, and its section for two builds."""

from __future__ import annotations

import copy

from benchmarks.compiled import run_in, source_hash
from benchmarks.replay_bench import markdown


def test_an_in_memory_run_in_a_fresh_interpreter_reports_its_build_and_output_digests() -> None:
    result = run_in(None, "benchmarks.replay_bench", "4000", "2")
    assert result["build"] == "pure Python"
    first, second = result["replay"]
    assert first["events"] == second["events"] == 4000
    assert first["outputs"]["features"] > 0
    assert set(first["digests"]) == set(first["outputs"])
    assert first["digests"] == second["digests"]  # deterministic
    assert len(result["core"]) == 2


def test_the_section_shows_each_build_and_says_when_their_outputs_differ() -> None:
    pure = run_in(None, "benchmarks.replay_bench", "2000", "1")
    compiled = copy.deepcopy(pure)
    compiled["build"] = "compiled with mypyc: 11 of 11 hot-path modules"
    compiled["replay"][0]["seconds"] /= 3
    results = {"machine": "test box", "events": 2000, "builds": [pure, compiled], "identical": True, "kafka": []}
    text = markdown(results)
    assert "| pure Python |" in text
    assert "| compiled with mypyc: 11 of 11 hot-path modules |" in text
    assert text.count("against a target of at least 200,000 events/s") == 2
    assert "Every run of every build gave the same outputs, byte for byte" in text
    assert "DIFFER" not in text
    assert "**The builds' outputs DIFFER**" in markdown({**results, "identical": False})


def test_the_compiled_copy_is_keyed_by_the_sources() -> None:
    assert source_hash() == source_hash()
    assert len(source_hash()) == 16
