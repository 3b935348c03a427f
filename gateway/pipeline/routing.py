"""The routing stage: the requested public model name -> its deployments, in fallback order."""

from __future__ import annotations

from gateway.errors import ModelNotFound
from gateway.pipeline.context import CallContext
from gateway.pipeline.hooks import BaseHook
from gateway.providers.registry import ProviderRegistry


class RoutingHook(BaseHook):
    name = "routing"

    def __init__(self, registry: ProviderRegistry) -> None:
        self.registry = registry

    async def before_request(self, ctx: CallContext) -> None:
        route = self.registry.get_route(ctx.model)
        if route is None:
            raise ModelNotFound(
                f"The model {ctx.model!r} does not exist or you do not have access to it; "
                "GET /v1/models lists the models this gateway serves.",
                param="model",
            )
        ctx.route = route
