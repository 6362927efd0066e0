"""scalp-pipeline application shell: CLI, settings loading, logging, process lifecycle."""

__version__ = "0.1.0"
