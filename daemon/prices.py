"""What tokens cost: a price per model (USD per million tokens), and the cost of a
request from its usage.

The built-in table holds the published prices (../shared/docs/anthropic-messages-notes.md
§6). A TOML file can add models or change prices: `STEER_PRICES` (a path), else
`STEER_HOME/prices.toml` if it exists::

    # USD per million tokens. A listed model replaces its built-in price.
    builtin = true          # false: only the models below have a price

    [models."claude-opus-5-5"]
    input = 4
    output = 20
    cache_write_5m = 5
    cache_write_1h = 8
    cache_read = 0.20

A model with no price is never guessed at: its tokens are counted and its cost is
None ("price unknown").
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from protocol.sessions import Usage

PRICES_FILE = "prices.toml"


class PriceFileError(ValueError):
    """A price file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


#: Published prices (notes §6). Sonnet 5 and the SDK-only ids have none published: they
#: are "price unknown" until a price file names them.
BUILTIN_PRICES: dict[str, ModelPrice] = {
    "claude-opus-5-5": ModelPrice(4, 20, 5, 8, 0.20),
    "claude-fable-5-1": ModelPrice(10, 50, 12.5, 20, 0.25),
    "claude-mythos-5-1": ModelPrice(10, 50, 12.5, 20, 0.25),
    "claude-opus-5": ModelPrice(5, 25, 6.25, 10, 0.50),
    "claude-fable-5": ModelPrice(10, 50, 12.5, 20, 1.00),
    "claude-mythos-5": ModelPrice(10, 50, 12.5, 20, 1.00),
    "claude-opus-4-8": ModelPrice(5, 25, 6.25, 10, 0.50),
}


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: Mapping[str, ModelPrice]

    def price(self, model: str) -> ModelPrice | None:
        return self.prices.get(model)

    def cost(self, model: str, usage: Usage, *, cache_write_1h_tokens: int = 0) -> float | None:
        """What a request with `usage` cost (None: no price for `model`). Cache writes
        are at the 5-minute rate except the `cache_write_1h_tokens` of them."""
        price = self.price(model)
        if price is None:
            return None
        write_1h = min(cache_write_1h_tokens, usage.cache_creation_input_tokens)
        micro = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + usage.cache_read_input_tokens * price.cache_read
            + (usage.cache_creation_input_tokens - write_1h) * price.cache_write_5m
            + write_1h * price.cache_write_1h
        )
        return micro / 1_000_000

    def cost_if_cache_lost(
        self, model: str, usage: Usage, *, cache_write_1h_tokens: int = 0
    ) -> float | None:
        """What the same request would have cost with a cold cache: every prompt token
        it read from cache written to it instead (at the 5-minute rate)."""
        cold = usage.model_copy(
            update={
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens
                + usage.cache_read_input_tokens,
            }
        )
        return self.cost(model, cold, cache_write_1h_tokens=cache_write_1h_tokens)


DEFAULT_PRICES = PriceTable(BUILTIN_PRICES)


def load_prices(path: Path | None, home: Path) -> PriceTable:
    """The price table: the built-in one, with `path` (else `home/prices.toml`, if it
    exists) over it. Raises `PriceFileError` for a file that cannot be used."""
    if path is None:
        path = home / PRICES_FILE
        if not path.exists():
            return DEFAULT_PRICES
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PriceFileError(f"{path}: {exc}") from exc
    return PriceTable(_parse(data, path))


def _parse(data: dict[str, object], path: Path) -> dict[str, ModelPrice]:
    unknown = set(data) - {"builtin", "models"}
    if unknown:
        raise PriceFileError(f"{path}: unknown keys {sorted(unknown)}; expected builtin, models")
    builtin = data.get("builtin", True)
    if not isinstance(builtin, bool):
        raise PriceFileError(f"{path}: builtin must be true or false")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PriceFileError(f'{path}: models must be a table of [models."MODEL"] tables')
    table = dict(BUILTIN_PRICES) if builtin else {}
    names = [f.name for f in fields(ModelPrice)]
    for model, entry in models.items():
        where = f'{path}: [models."{model}"]'
        if not isinstance(entry, dict):
            raise PriceFileError(f"{where} must be a table with {', '.join(names)}")
        if set(entry) != set(names):
            missing, extra = set(names) - set(entry), set(entry) - set(names)
            raise PriceFileError(
                f"{where}: needs exactly {', '.join(names)}"
                + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                + (f"; unknown {', '.join(sorted(extra))}" if extra else "")
            )
        values = {}
        for name in names:
            value = entry[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not _usd(value):
                raise PriceFileError(f"{where}: {name} must be a number of USD >= 0, not {value!r}")
            values[name] = float(value)
        table[model] = ModelPrice(**values)
    return table


def _usd(value: float) -> bool:
    return math.isfinite(value) and value >= 0
