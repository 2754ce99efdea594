"""The price table and its TOML file: what overrides what, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.prices import DEFAULT_PRICES, ModelPrice, PriceFileError, load_prices
from protocol.sessions import Usage


def test_no_file_is_the_published_table_and_an_unlisted_model_has_no_price(
    tmp_path: Path,
) -> None:
    prices = load_prices(None, tmp_path)
    assert prices is DEFAULT_PRICES
    assert prices.price("claude-opus-5-5") == ModelPrice(4, 20, 5, 8, 0.20)
    usage = Usage(input_tokens=10, output_tokens=5)
    assert prices.cost("claude-sonnet-5", usage) is None  # unpublished: never guessed


def test_a_file_adds_models_replaces_prices_or_the_whole_table(tmp_path: Path) -> None:
    entry = "input = 3\noutput = 15\ncache_write_5m = 3.75\ncache_write_1h = 6\ncache_read = 0.3\n"
    (tmp_path / "prices.toml").write_text(f'[models."claude-sonnet-5"]\n{entry}')
    prices = load_prices(None, tmp_path)  # STEER_HOME/prices.toml
    assert prices.price("claude-sonnet-5") == ModelPrice(3, 15, 3.75, 6, 0.3)
    assert prices.price("claude-opus-5-5") is not None  # the built-in table stays
    usage = Usage(input_tokens=100, cache_creation_input_tokens=40, output_tokens=10)
    # 1h writes at their own rate; the rest of the writes at the 5-minute one.
    expected = (100 * 3 + 30 * 3.75 + 10 * 6 + 10 * 15) / 1_000_000
    assert prices.cost("claude-sonnet-5", usage, cache_write_1h_tokens=10) == pytest.approx(
        expected
    )

    only = tmp_path / "only.toml"
    only.write_text(f'builtin = false\n[models."claude-sonnet-5"]\n{entry}')
    prices = load_prices(only, tmp_path)
    assert prices.price("claude-opus-5-5") is None and prices.price("claude-sonnet-5")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("models = [", "bad.toml: "),
        ("builtin = 1", "builtin must be true or false"),
        ("colour = 'red'", "unknown keys ['colour']"),
        ('[models."m"]\ninput = 1', "needs exactly input, output"),
        (
            '[models."m"]\ninput = -1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\n'
            "cache_read = 1",
            "input must be a number of USD >= 0, not -1",
        ),
        (
            '[models."m"]\ninput = inf\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\n'
            "cache_read = 1",
            "input must be a number of USD >= 0",
        ),
    ],
)
def test_a_bad_file_is_refused_with_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(PriceFileError, match=r"bad\.toml") as refused:
        load_prices(bad, tmp_path)
    assert problem in str(refused.value)


def test_the_cost_had_the_cache_been_lost_writes_what_was_read(tmp_path: Path) -> None:
    usage = Usage(input_tokens=2, cache_creation_input_tokens=3, cache_read_input_tokens=1000)
    lost = DEFAULT_PRICES.cost_if_cache_lost("claude-opus-5-5", usage)
    assert lost == pytest.approx((2 * 4 + 1003 * 5) / 1_000_000)
    assert DEFAULT_PRICES.cost_if_cache_lost("claude-sonnet-5", usage) is None
