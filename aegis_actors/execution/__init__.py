"""Execution: pre-trade risk, write-ahead orders, the broker, fills, positions, exits."""
