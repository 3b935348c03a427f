"""Price table and cost(usage, model), in integer nanodollars."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import orjson

from gateway.calls.context import Usage
from gateway.config import ModelConfig, Price
from gateway.usage import litellm_package_dir
from gateway.usage.money import NANOS_PER_USD, usd

__all__ = ["NANOS_PER_USD", "usd"]  # also here, where the rest of the pricing is

IN_PROCESS = frozenset({"fake", "local"})  # providers served by the gateway itself: no price map entry

logger = logging.getLogger(__name__)

PER_MTOK = 1_000_000  # prices are kept per million tokens so that every sum below stays an exact integer
DEFAULT_OUTPUT_CAP = 4096  # output tokens reserved when neither the request nor the price map gives a limit


def nanos(usd: float) -> int:
    """USD to integer nano-USD, rounded half up (toward +infinity) at the nearest nano; raises ValueError on nan/inf.

    Goes through the float's shortest decimal form, so nanos(1.5e-9) is 2 although 1.5e-9 * 1e9 < 1.5 in binary.
    """
    if not math.isfinite(usd):
        raise ValueError(f"not a finite amount of USD: {usd!r}")
    scaled = Decimal(repr(usd)) * NANOS_PER_USD + Decimal("0.5")
    return int(scaled.to_integral_value(rounding=ROUND_FLOOR))


def usage_from_response(data: Mapping[str, object]) -> Usage | None:
    """The usage of an OpenAI-shaped response body (chat, completions, embeddings, responses); never raises.

    Reads `prompt_tokens`/`completion_tokens` (or the Responses API's `input_tokens`/`output_tokens`), their
    `*_details.cached_tokens` and `reasoning_tokens`, and litellm's Anthropic extras `cache_read_input_tokens`
    and `cache_creation_input_tokens`, which litellm already includes in `prompt_tokens`. Returns None when
    usage is absent, not a count, negative, or inconsistent (cached + cache writes above the prompt).
    """
    usage = data.get("usage") if type(data) is dict or isinstance(data, Mapping) else None
    if not (type(usage) is dict or isinstance(usage, Mapping)):  # `type is dict` first: an ABC check is slow
        return None
    prompt = _count(usage, "prompt_tokens", "input_tokens")
    completion = _count(usage, "completion_tokens", "output_tokens")
    total = _count(usage, "total_tokens")
    if prompt is None and total is not None:
        prompt = total - (completion or 0)
    completion = completion or 0
    if prompt is None or prompt < 0 or completion < 0:
        return None
    prompt_details = _mapping(usage, "prompt_tokens_details", "input_tokens_details")
    completion_details = _mapping(usage, "completion_tokens_details", "output_tokens_details")
    cached = _count(prompt_details, "cached_tokens") or _count(usage, "cache_read_input_tokens") or 0
    creation = _count(usage, "cache_creation_input_tokens") or _count(prompt_details, "cache_creation_tokens") or 0
    reasoning = _count(completion_details, "reasoning_tokens") or 0
    if min(cached, creation, reasoning) < 0 or cached + creation > prompt or reasoning > completion:
        return None
    return Usage(prompt, completion, cached, reasoning, creation)


def _count(data: Mapping[str, object] | None, *keys: str) -> int | None:
    """The first of `keys` that holds a whole number; -1 (rejected by the caller) for any other value."""
    if data is None:
        return None
    for key in keys:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return -1
    return None


def _mapping(data: Mapping[str, object], *keys: str) -> Mapping[str, object] | None:
    for key in keys:
        value = data.get(key)
        # Absent keys first: isinstance(None, Mapping) is an ABC check, ~4x the cost of the whole lookup.
        if value is not None and (type(value) is dict or isinstance(value, Mapping)):
            return value
    return None


@dataclass(frozen=True, slots=True)
class Prices:
    """One model's prices, each in integer nano-USD per million tokens (= USD per Mtok x 1e9).

    Integers keep cost() exact: $0.15/Mtok is 150_000_000, where a float per-token price (0.15e-6 USD) would
    make a million tokens cost 150000000.00000003 nanos and the ceiling charge one nano too much.
    """

    input: int
    output: int
    cached_input: int
    cache_creation: int
    reasoning: int
    max_output_tokens: int | None = None
    max_input_tokens: int | None = None


FREE = Prices(input=0, output=0, cached_input=0, cache_creation=0, reasoning=0)


class PriceTable:
    """Prices per configured model: the config's `price:` override, else litellm's bundled price map.

    Models missing from the map cost 0 and log one warning each; operators should set `price:` for them
    (self-hosted vLLM or Ollama models, new releases). `fake/...` and `local/...` models (served in process) cost 0
    unless they set `price:`.
    Tiered prices (above 128k/200k prompt tokens), batch and priority tiers are not modelled.
    """

    def __init__(self, models: Iterable[ModelConfig], *, price_map_path: Path | None = None) -> None:
        self._price_map_path = price_map_path
        self._price_map: dict[str, object] | None = None
        self._by_name = {model.name: (model, self._resolve(model)) for model in models}
        # The map is ~30k entries (6 MB of JSON, ~6 MB of dicts): keep only the resolved prices above. A model
        # first seen later (a changed ModelConfig) reads the file again.
        self._price_map = None

    def prices_for(self, model: ModelConfig) -> Prices:
        hit = self._by_name.get(model.name)
        if hit is not None and (hit[0] is model or hit[0] == model):
            return hit[1]
        prices = self._resolve(model)
        self._by_name[model.name] = (model, prices)
        self._price_map = None
        return prices

    def cost(self, model: ModelConfig, usage: Usage) -> int:
        """What a finished call cost, in nano-USD, rounded up once: the gateway never under-charges."""
        p = self.prices_for(model)
        fresh = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_creation_tokens, 0)
        visible = max(usage.completion_tokens - usage.reasoning_tokens, 0)
        total = (
            fresh * p.input
            + usage.cached_tokens * p.cached_input
            + usage.cache_creation_tokens * p.cache_creation
            + visible * p.output
            + usage.reasoning_tokens * p.reasoning
        )
        return -(-total // PER_MTOK)

    def estimate(self, model: ModelConfig, prompt_tokens: int, max_output_tokens: int) -> int:
        """The most a call can cost, in nano-USD, for a budget reservation.

        Every prompt token at the dearest prompt price (a cache write costs more than plain input on
        Anthropic) and every output token at the dearer of the output and reasoning prices.
        """
        p = self.prices_for(model)
        total = prompt_tokens * max(p.input, p.cache_creation, p.cached_input)
        total += max_output_tokens * max(p.output, p.reasoning)
        return -(-total // PER_MTOK)

    def output_cap(self, model: ModelConfig) -> int:
        """The model's maximum output tokens from the price map, or DEFAULT_OUTPUT_CAP when it is unknown."""
        return self.prices_for(model).max_output_tokens or DEFAULT_OUTPUT_CAP

    def _resolve(self, model: ModelConfig) -> Prices:
        entry = None if model.provider in IN_PROCESS else self._entry(model)
        if model.price is not None:
            return _override_prices(model.price, entry)
        if entry is not None and _is_priced(entry):
            return _prices_from_entry(entry)
        if model.provider not in IN_PROCESS:
            logger.warning(
                "no price known for model %r (%s): its calls are recorded at cost 0; set `price:` in the config",
                model.name,
                model.model,
            )
        return _limits_only(entry)

    def _entry(self, model: ModelConfig) -> Mapping[str, object] | None:
        """litellm's entry for a model: by "provider/model", then the bare upstream name."""
        price_map = self._load_price_map()
        for key in (model.model, model.upstream_model):
            entry = price_map.get(key)
            if isinstance(entry, Mapping):
                return entry
        return None

    def _load_price_map(self) -> dict[str, object]:
        if self._price_map is None:
            path = self._price_map_path or litellm_package_dir() / "model_prices_and_context_window_backup.json"
            loaded = orjson.loads(path.read_bytes())
            self._price_map = loaded if isinstance(loaded, dict) else {}
        return self._price_map


def _override_prices(price: Price, entry: Mapping[str, object] | None) -> Prices:
    """The config's `price:` (USD per Mtok); the map, when it knows the model, still gives its token limits."""
    input_ = round(price.input_per_mtok * NANOS_PER_USD)
    output = round(price.output_per_mtok * NANOS_PER_USD)
    cached = price.cached_input_per_mtok
    return Prices(
        input=input_,
        output=output,
        cached_input=input_ if cached is None else round(cached * NANOS_PER_USD),
        cache_creation=input_,
        reasoning=output,
        max_output_tokens=_limit(entry, "max_output_tokens", "max_tokens"),
        max_input_tokens=_limit(entry, "max_input_tokens"),
    )


def _is_priced(entry: Mapping[str, object]) -> bool:
    return _cost(entry, "input_cost_per_token") is not None or _cost(entry, "output_cost_per_token") is not None


def _prices_from_entry(entry: Mapping[str, object]) -> Prices:
    input_ = _per_mtok(_cost(entry, "input_cost_per_token") or 0.0)
    output = _per_mtok(_cost(entry, "output_cost_per_token") or 0.0)
    cached = _cost(entry, "cache_read_input_token_cost")
    creation = _cost(entry, "cache_creation_input_token_cost")
    reasoning = _cost(entry, "output_cost_per_reasoning_token")
    return Prices(
        input=input_,
        output=output,
        # Without a published cache price, cached and written tokens pay the input price: never under-charge.
        cached_input=input_ if cached is None else _per_mtok(cached),
        cache_creation=input_ if creation is None else _per_mtok(creation),
        reasoning=output if reasoning is None else _per_mtok(reasoning),
        max_output_tokens=_limit(entry, "max_output_tokens", "max_tokens"),
        max_input_tokens=_limit(entry, "max_input_tokens"),
    )


def _limits_only(entry: Mapping[str, object] | None) -> Prices:
    """A free model; a map entry without per-token prices (image or audio models) still gives its limits."""
    if entry is None:
        return FREE
    return replace(
        FREE,
        max_output_tokens=_limit(entry, "max_output_tokens", "max_tokens"),
        max_input_tokens=_limit(entry, "max_input_tokens"),
    )


def _per_mtok(usd_per_token: float) -> int:
    """USD per token to integer nano-USD per million tokens; round() drops binary noise (1.5e-07 -> 150_000_000)."""
    return round(usd_per_token * NANOS_PER_USD * PER_MTOK)


def _cost(entry: Mapping[str, object], key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _limit(entry: Mapping[str, object] | None, *keys: str) -> int | None:
    if entry is None:
        return None
    for key in keys:
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
