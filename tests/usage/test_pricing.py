"""Prices from litellm's bundled map and config overrides, exact nano-USD costs, and usage parsing."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from gateway.calls.context import Usage
from gateway.config import ModelConfig, Price
from gateway.usage.pricing import DEFAULT_OUTPUT_CAP, PriceTable, nanos, usage_from_response, usd

MTOK = 1_000_000
USD = 1_000_000_000  # nanos

MINI = ModelConfig(name="mini", model="openai/gpt-4o-mini")
HAIKU = ModelConfig(name="haiku", model="anthropic/claude-haiku-4-5")
UNKNOWN = ModelConfig(name="mystery", model="anthropic/no-such-model-9")
FAKE = ModelConfig(name="demo", model="fake/echo")


def priced(model: ModelConfig, input_: float, output: float, cached: float | None = None) -> ModelConfig:
    price = Price(input_per_mtok=input_, output_per_mtok=output, cached_input_per_mtok=cached)
    return model.model_copy(update={"price": price})


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable([MINI, HAIKU, FAKE])


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0.0, 0),
        (1.0, USD),
        (0.15, 150_000_000),
        (0.6, 600_000_000),
        (1e-9, 1),
        (1.4e-9, 1),
        (1.5e-9, 2),  # half up, although 1.5e-9 * 1e9 is 1.4999999999999998 in binary floats
        (2.5e-9, 3),
        (0.4e-9, 0),
        (-1.5e-9, -1),  # ties go toward +infinity
        (123.456789012, 123_456_789_012),
    ],
)
def test_nanos(amount: float, expected: int) -> None:
    assert nanos(amount) == expected


@pytest.mark.parametrize(("amount", "expected"), [(0, 0.0), (150_000_000, 0.15), (USD, 1.0), (1, 1e-9)])
def test_usd(amount: int, expected: float) -> None:
    assert usd(amount) == expected


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), float("-inf")])
def test_nanos_refuses_non_finite(amount: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        nanos(amount)


# Published prices: gpt-4o-mini $0.15 / $0.60 per Mtok, cached input $0.075; claude-haiku-4-5 $1 / $5,
# cache reads $0.10, cache writes (5 min) $1.25.
@pytest.mark.parametrize(
    ("model", "usage", "expected_usd"),
    [
        (MINI, Usage(MTOK, 0), 0.15),
        (MINI, Usage(0, MTOK), 0.60),
        (MINI, Usage(MTOK, 0, cached_tokens=MTOK), 0.075),
        (MINI, Usage(2 * MTOK, MTOK, cached_tokens=MTOK), 0.15 + 0.075 + 0.60),
        (MINI, Usage(0, MTOK, reasoning_tokens=MTOK // 2), 0.60),  # no reasoning price: output price
        (HAIKU, Usage(MTOK, MTOK), 1.0 + 5.0),
        (HAIKU, Usage(3 * MTOK, 0, cached_tokens=MTOK, cache_creation_tokens=MTOK), 1.0 + 0.10 + 1.25),
    ],
)
def test_cost_from_the_bundled_price_map(
    table: PriceTable, model: ModelConfig, usage: Usage, expected_usd: float
) -> None:
    assert table.cost(model, usage) == nanos(expected_usd)


def test_a_config_price_overrides_the_map() -> None:
    model = priced(MINI, 1.0, 2.0)
    table = PriceTable([model])
    assert table.cost(model, Usage(MTOK, MTOK)) == 3 * USD
    assert table.cost(model, Usage(MTOK, 0, cached_tokens=MTOK)) == 1 * USD  # cached defaults to the input price
    assert table.output_cap(model) == 16384  # limits still come from the map


def test_an_override_cached_price_applies_to_cached_tokens() -> None:
    model = priced(MINI, 1.0, 2.0, cached=0.25)
    assert PriceTable([model]).cost(model, Usage(4 * MTOK, 0, cached_tokens=2 * MTOK)) == nanos(2.0 + 0.5)


def test_an_override_on_an_existing_name_is_picked_up(table: PriceTable) -> None:
    assert table.cost(priced(MINI, 1.0, 2.0), Usage(MTOK, 0)) == USD
    assert table.cost(MINI, Usage(MTOK, 0)) == nanos(0.15)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [(0, 0), (1, 1), (10, 1), (11, 2), (20, 2), (21, 3)],  # 0.1 nano per token, rounded up once
)
def test_cost_rounds_up_once_at_the_end(tokens: int, expected: int) -> None:
    model = priced(FAKE, 0.0001, 0.0001)  # $0.0001 per Mtok = 0.1 nano-USD per token
    table = PriceTable([model])
    assert table.cost(model, Usage(tokens, 0)) == expected
    assert table.cost(model, Usage(tokens // 2, tokens - tokens // 2)) == expected


def test_fake_models_are_free_unless_priced(table: PriceTable, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.usage.pricing"):
        assert table.cost(FAKE, Usage(MTOK, MTOK)) == 0
        assert PriceTable([FAKE]).estimate(FAKE, MTOK, MTOK) == 0
    assert caplog.records == []
    assert PriceTable([priced(FAKE, 1.0, 1.0)]).cost(priced(FAKE, 1.0, 1.0), Usage(MTOK, MTOK)) == 2 * USD


def test_unknown_models_are_free_and_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.usage.pricing"):
        table = PriceTable([UNKNOWN])
        assert table.cost(UNKNOWN, Usage(MTOK, MTOK)) == 0
        assert table.estimate(UNKNOWN, 100, 100) == 0
        assert table.output_cap(UNKNOWN) == DEFAULT_OUTPUT_CAP
    assert [r.getMessage() for r in caplog.records] == [
        "no price known for model 'mystery' (anthropic/no-such-model-9): its calls are recorded at cost 0; "
        "set `price:` in the config"
    ]


@pytest.fixture
def price_map(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    entries = {
        "acme-reasoner": {
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6,
            "output_cost_per_reasoning_token": 3e-6,
            "cache_read_input_token_cost": 1e-7,
            "cache_creation_input_token_cost": 1.25e-6,
            "max_output_tokens": 1000,
            "max_input_tokens": 8000,
        },
        "acme/plain": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "max_tokens": 512},
        "acme/image-only": {"output_cost_per_image": 0.04, "max_output_tokens": 77},
    }
    path.write_bytes(orjson.dumps(entries))
    return path


REASONER = ModelConfig(name="r", model="anthropic/acme-reasoner")  # found by its bare upstream name
PLAIN = ModelConfig(name="p", model="acme/plain")  # found by "provider/model"


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        (REASONER, Usage(1000, 1000, reasoning_tokens=400), 1000 * 1000 + 600 * 2000 + 400 * 3000),
        (REASONER, Usage(1000, 0, cached_tokens=200, cache_creation_tokens=300), 500 * 1000 + 200 * 100 + 300 * 1250),
        (PLAIN, Usage(1000, 1000, reasoning_tokens=1000), 1000 * 1000 + 1000 * 2000),
        (PLAIN, Usage(1000, 0, cached_tokens=500, cache_creation_tokens=500), 1000 * 1000),  # no cache prices
    ],
)
def test_reasoning_and_cache_prices_from_the_map(
    price_map: Path, model: ModelConfig, usage: Usage, expected: int
) -> None:
    assert PriceTable([model], price_map_path=price_map).cost(model, usage) == expected


@pytest.mark.parametrize(
    ("model", "prompt", "output", "expected"),
    [
        (MINI, 1000, 100, 1000 * 150 + 100 * 600),
        (HAIKU, 1000, 100, 1000 * 1250 + 100 * 5000),  # prompt at the cache-write price, the dearest
        (MINI, 0, 0, 0),
        (MINI, 1, 1, 150 + 600),  # $0.15 per Mtok is 150 nano-USD per token
    ],
)
def test_estimate_is_the_worst_case(
    table: PriceTable, model: ModelConfig, prompt: int, output: int, expected: int
) -> None:
    assert table.estimate(model, prompt, output) == expected
    assert table.estimate(model, prompt, output) >= table.cost(model, Usage(prompt, output))


def test_estimate_prices_output_at_the_dearer_reasoning_price(price_map: Path) -> None:
    assert PriceTable([REASONER], price_map_path=price_map).estimate(REASONER, 100, 1000) == 100 * 1250 + 1000 * 3000


@pytest.mark.parametrize(
    ("model", "expected"),
    [(REASONER, 1000), (PLAIN, 512), (ModelConfig(name="i", model="acme/image-only"), 77), (FAKE, DEFAULT_OUTPUT_CAP)],
)
def test_output_cap(price_map: Path, model: ModelConfig, expected: int) -> None:
    assert PriceTable([model], price_map_path=price_map).output_cap(model) == expected


def test_output_cap_of_published_models(table: PriceTable) -> None:
    assert table.output_cap(MINI) == 16384
    assert table.prices_for(MINI).max_input_tokens == 128000


def test_the_price_map_is_read_only_when_needed(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    table = PriceTable([FAKE, priced(FAKE, 1.0, 1.0).model_copy(update={"name": "paid"})], price_map_path=missing)
    assert table.cost(FAKE, Usage(10, 10)) == 0
    with pytest.raises(FileNotFoundError):
        table.prices_for(MINI)


def test_prices_are_computed_once(table: PriceTable) -> None:
    assert table.prices_for(MINI) is table.prices_for(MINI)
    assert table.prices_for(MINI) is table.prices_for(MINI.model_copy())  # an equal config hits the cache too


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}, Usage(7, 2)),
        (
            {
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 50,
                    "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 30},
                }
            },
            Usage(100, 50, cached_tokens=60, reasoning_tokens=30),
        ),
        (
            {"usage": {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": None}},
            Usage(5, 1),
        ),
        ({"object": "list", "usage": {"prompt_tokens": 8, "total_tokens": 8}}, Usage(8, 0)),  # embeddings
        ({"usage": {"total_tokens": 8}}, Usage(8, 0)),
        ({"usage": {"prompt_tokens": 7.0, "completion_tokens": 2.0}}, Usage(7, 2)),
        (  # litellm's Anthropic usage: prompt_tokens already includes cache reads and writes
            {
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 10,
                    "cache_creation_input_tokens": 300,
                    "cache_read_input_tokens": 600,
                }
            },
            Usage(1000, 10, cached_tokens=600, cache_creation_tokens=300),
        ),
        (
            {
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 10,
                    "prompt_tokens_details": {"cached_tokens": 600, "cache_creation_tokens": 300},
                }
            },
            Usage(1000, 10, cached_tokens=600, cache_creation_tokens=300),
        ),
        (  # the Responses API's names
            {
                "usage": {
                    "input_tokens": 40,
                    "output_tokens": 20,
                    "input_tokens_details": {"cached_tokens": 10},
                    "output_tokens_details": {"reasoning_tokens": 5},
                }
            },
            Usage(40, 20, cached_tokens=10, reasoning_tokens=5),
        ),
        ({}, None),
        ({"usage": None}, None),
        ({"usage": "7 tokens"}, None),
        ({"usage": {}}, None),
        ({"usage": {"completion_tokens": 2}}, None),
        ({"usage": {"prompt_tokens": "7", "completion_tokens": 2}}, None),
        ({"usage": {"prompt_tokens": True, "completion_tokens": 2}}, None),
        ({"usage": {"prompt_tokens": 7.5, "completion_tokens": 2}}, None),
        ({"usage": {"prompt_tokens": -1, "completion_tokens": 2}}, None),
        ({"usage": {"prompt_tokens": 7, "completion_tokens": -2}}, None),
        ({"usage": {"prompt_tokens": 7, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 8}}}, None),
        ({"usage": {"prompt_tokens": 7, "completion_tokens": 2, "cache_creation_input_tokens": "x"}}, None),
        (
            {
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 2,
                    "completion_tokens_details": {"reasoning_tokens": 3},
                }
            },
            None,
        ),
        ([1, 2], None),
        (None, None),
    ],
)
def test_usage_from_response(data: object, expected: Usage | None) -> None:
    assert usage_from_response(data) == expected  # type: ignore[arg-type]
