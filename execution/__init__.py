"""The execution model: order plans, the router, position and PnL accounting, the paper broker.

Pure: no Kafka, Faust or database import. The live router (connectors/execution) and the replay
(backtest) drive the same code; the audit trail is injected (``execution.audit.AuditSink``).
"""
