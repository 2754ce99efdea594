"""Amounts of money as steer shows them, on the standard library alone: the CLI's
tables print them without importing the budget or cost models (pydantic)."""

from __future__ import annotations

import math


def dollars(amount: float) -> str:
    """$0.50, $12.00, $0.0042, $0.000001: cents, or four significant digits below $1."""
    if amount >= 1 or amount <= 0:
        return f"${amount:,.2f}"
    places = max(2, 3 - math.floor(math.log10(amount)))
    text = f"{amount:.{places}f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def usd_text(usd: float | None, *, simulated: bool = False, compact: bool = False) -> str:
    """A cost as shown: `$0.0311`, `$0.0311 (simulated)` (`sim $0.0311` in a table
    cell), or `price unknown` when the model has no price (never a guess)."""
    if usd is None:
        return "price unknown"
    amount = f"${usd:.4f}"
    if not simulated:
        return amount
    return f"sim {amount}" if compact else f"{amount} (simulated)"
