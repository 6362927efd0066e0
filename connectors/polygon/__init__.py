"""Polygon / Massive market-data connector."""
