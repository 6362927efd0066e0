"""Deterministic synthetic sessions served over a Polygon-protocol WebSocket and REST server."""
