"""GET /v1/models and /v1/models/{model}, listed from the provider registry."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.errors import ModelNotFound
from gateway.services import Services

router = APIRouter(tags=["models"])


def model_object(services: Services, name: str) -> dict[str, object]:
    config = services.config.get_model(name)
    assert config is not None
    return {"id": name, "object": "model", "created": services.started_at, "owned_by": config.provider}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    services: Services = request.app.state.services
    key = services.authenticator.authenticate(request.headers.get("authorization")).key
    names = [m.name for m in services.config.models if key is None or key.may_use(m.name)]
    return {"object": "list", "data": [model_object(services, name) for name in names]}


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> dict[str, object]:
    services: Services = request.app.state.services
    key = services.authenticator.authenticate(request.headers.get("authorization")).key
    if services.config.get_model(model) is None or (key is not None and not key.may_use(model)):
        raise ModelNotFound(f"The model {model!r} does not exist or you do not have access to it.", param="model")
    return model_object(services, model)
