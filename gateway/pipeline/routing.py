"""The routing stage: the requested public model name -> its deployments in fallback order, if the key may use it."""

from __future__ import annotations

from gateway.calls.context import CallContext
from gateway.errors import ModelNotFound, PermissionDenied
from gateway.pipeline.hooks import BaseHook
from gateway.providers.registry import ProviderRegistry


class RoutingHook(BaseHook):
    name = "routing"

    def __init__(self, registry: ProviderRegistry) -> None:
        self.registry = registry

    def before_request(self, ctx: CallContext) -> None:
        route = self.registry.get_route(ctx.model)
        if route is None:
            raise ModelNotFound(
                f"The model {ctx.model!r} does not exist or you do not have access to it; "
                "GET /v1/models lists the models this gateway serves.",
                param="model",
            )
        key = ctx.principal.key if ctx.principal else None
        if key is not None and not key.may_use(ctx.model):
            allowed = ", ".join(sorted(key.allowed_models or ())) or "none"
            raise PermissionDenied(
                f"This key may not use model {ctx.model!r}; it may use: {allowed}.",
                param="model",
                code="model_not_allowed",
            )
        ctx.route = route
