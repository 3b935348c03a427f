"""Money as the gateway keeps it: integer nano-USD, so every sum is exact; USD (a float) only for display."""

from __future__ import annotations

NANOS_PER_USD = 1_000_000_000


def usd(nanos: int) -> float:
    """Nano-USD to USD, for display; budgets and sums stay in integer nanos."""
    return nanos / NANOS_PER_USD
