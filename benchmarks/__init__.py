"""Benchmarks (`scalp bench <name>`); results go to BENCHMARKS.md."""
