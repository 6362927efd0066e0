"""Tradier brokerage connector."""
