"""The project's exception tree (one root, retryable vs fatal).

    ScalpError                       exit 1 unless a subclass says otherwise
    ├── ConfigError                  bad configuration or usage; exit 2
    │   ├── PolicyError              invalid session policy or calendar input (streams.core.errors)
    │   └── TuneError                a tuning run that cannot be set up (backtest.tune)
    ├── RetryableError               a transient failure: retry with backoff
    ├── FatalError                   retrying cannot help; stop and report
    │   └── ServiceError             a local service could not be started or reached
    ├── SerializationError           a record does not match its schema (names topic and field)
    ├── CoreError                    the strategy core's own errors (streams.core.errors)
    ├── ParseError                   a venue payload that cannot be parsed (connectors.polygon.parsing)
    ├── TradierError                 Tradier refused or failed a request (connectors.tradier.rest)
    │   └── TradierAuthError, TradierRejected, AmbiguousSubmit
    ├── InvalidIntent, BrokerRejected  the execution model's refusals (execution.model)
    ├── ColumnarError, FencedError   the sink's fast path refused a batch; another worker owns a partition
    ├── RetentionGap                 a replay range older than Kafka keeps (backtest.sources)
    ├── LookAhead                    an export row that would use data from after its signal
    └── StepFailed                   a demo step failed (scalp.demo)

:func:`exit_code` maps any exception to the process's exit code (0 success, 2 usage or configuration,
1 runtime failure). Every package may import this module; it imports nothing of the project.
Messages never carry secrets: callers pass redacted URLs and DSNs.
"""

from __future__ import annotations


class ScalpError(Exception):
    """Root of every error raised on purpose by scalp-pipeline."""


class ConfigError(ScalpError):
    """Invalid configuration or command-line usage (exit code 2)."""


class RetryableError(ScalpError):
    """A transient failure that may succeed when retried."""


class FatalError(ScalpError):
    """A failure that retrying cannot fix."""


class ServiceError(FatalError):
    """A local service (Kafka, registry, PostgreSQL) could not be started or reached."""


class SerializationError(ScalpError):
    """A record could not be encoded or decoded with its topic's schema."""

    def __init__(self, topic: str, field: str | None, reason: str) -> None:
        self.topic = topic
        self.field = field
        self.reason = reason
        where = f"{topic}.{field}" if field else topic
        super().__init__(f"{where}: {reason}")


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def exit_code(exc: BaseException) -> int:
    """The exit code for a command that ended with ``exc``: 2 for usage and configuration errors, else 1."""
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
