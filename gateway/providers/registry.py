"""Public model name -> ordered deployments (the model, then its fallbacks), built once from the config."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import GatewayConfig, ModelConfig
from gateway.providers.base import Deployment, Provider
from gateway.providers.fake import FakeProvider
from gateway.providers.litellm import LiteLLMProvider
from gateway.providers.local import LocalProvider
from gateway.providers.openai_compat import OpenAICompatProvider


class ProviderRegistry:
    """Looks up routes in memory; no I/O on the request path."""

    def __init__(self, config: GatewayConfig, *, direct: OpenAICompatProvider) -> None:
        self.models = config.models
        self._fake = FakeProvider()
        self._litellm = LiteLLMProvider()
        self._local = LocalProvider()
        self._direct = direct
        deployments = {m.name: Deployment(m, self._provider_for(m)) for m in config.models}
        self._routes: dict[str, tuple[Deployment, ...]] = {
            m.name: (deployments[m.name], *(deployments[f] for f in m.fallbacks)) for m in config.models
        }

    def _provider_for(self, model: ModelConfig) -> Provider:
        if model.provider == "fake":
            return self._fake
        if model.provider == "local":
            return self._local
        if model.is_direct:
            return self._direct
        return self._litellm

    def wrap_providers(self, wrap: Callable[[Deployment], Provider]) -> None:
        """Puts `wrap(deployment)` in front of every deployment's provider (eval cassettes record and replay
        upstream answers at this boundary); done before the first call."""
        wrapped: dict[int, Deployment] = {}
        for name, route in self._routes.items():
            self._routes[name] = tuple(wrapped.setdefault(id(d), Deployment(d.config, wrap(d))) for d in route)

    def get_route(self, name: str) -> tuple[Deployment, ...] | None:
        return self._routes.get(name)

    @property
    def uses_litellm(self) -> bool:
        return any(route[0].provider is self._litellm for route in self._routes.values())
