"""Every vendor that does not speak OpenAI's API (Anthropic, Bedrock, Vertex, Azure, Mistral, Cohere...), via litellm.

litellm is imported on first use only: importing it costs about 3.3 s and 200 MB here, which a gateway
serving only OpenAI-compatible upstreams should not pay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import orjson

from gateway.config import ModelConfig
from gateway.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.providers.base import DONE_EVENT, JSONObject, Operation, Reply, error_for_status


def load_litellm() -> ModuleType:
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


class LiteLLMProvider:
    """Translates OpenAI-shaped requests to each vendor's API and back, through litellm."""

    def __init__(self) -> None:
        self._lib: ModuleType | None = None

    def _litellm(self) -> ModuleType:
        if self._lib is None:
            self._lib = load_litellm()
        return self._lib

    def _kwargs(self, model: ModelConfig, body: JSONObject) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(body)
        kwargs["model"] = model.model
        kwargs["timeout"] = model.timeout_s
        kwargs["num_retries"] = 0  # retries and fallbacks are the gateway's, with its own backoff
        if model.api_base:
            kwargs["api_base"] = model.api_base
        if model.api_key is not None:
            kwargs["api_key"] = model.api_key.get_secret_value()
        if model.headers:
            kwargs["extra_headers"] = dict(model.headers)
        return kwargs

    async def _call(self, op: Operation, kwargs: dict[str, Any], model: ModelConfig) -> Any:
        lib = self._litellm()
        try:
            if op == "chat":
                return await lib.acompletion(**kwargs)
            if op == "completions":
                return await lib.atext_completion(**kwargs)
            return await lib.aembedding(**kwargs)
        except GatewayError:
            raise
        except Exception as exc:  # provider boundary: every litellm failure becomes one of ours
            raise map_litellm_error(exc, model) from exc

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        kwargs = self._kwargs(model, body)
        kwargs.pop("stream", None)
        kwargs.pop("stream_options", None)
        response = await self._call(op, kwargs, model)
        data = response.model_dump(exclude_none=True, exclude={"_hidden_params", "_response_headers"})
        data.pop("_hidden_params", None)
        return Reply(orjson.dumps(data, default=str), data)

    async def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        if op == "embeddings":
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
        kwargs = self._kwargs(model, body)
        kwargs["stream"] = True
        response = await self._call(op, kwargs, model)
        try:
            async for chunk in response:
                data = chunk.model_dump(exclude_none=True)
                data.pop("_hidden_params", None)
                yield b"data: " + orjson.dumps(data, default=str) + b"\n\n"
        except GatewayError:
            raise
        except Exception as exc:  # provider boundary
            raise map_litellm_error(exc, model) from exc
        finally:
            close = getattr(response, "aclose", None)
            if close is not None:
                await close()
        yield DONE_EVENT


def map_litellm_error(exc: Exception, model: ModelConfig) -> GatewayError:
    """litellm's exceptions carry the upstream status; keep its meaning."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or type(exc).__name__ in (
        "Timeout",
        "APITimeoutError",
    ):
        return UpstreamTimeout(f"Upstream for model {model.name!r} did not answer within {model.timeout_s} s.")
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", None) or exc)
    if type(exc).__name__ == "UnsupportedParamsError":
        return InvalidRequest(f"Model {model.name!r} does not support a parameter of this request: {message}")
    if isinstance(status, int) and status >= 400:
        error = error_for_status(status, message, model)
        return error
    if type(exc).__name__ == "APIConnectionError":
        return UpstreamError(f"Could not reach the upstream for model {model.name!r}: {message}")
    return UpstreamError(f"Upstream for model {model.name!r} failed: {message}", retryable=False)
