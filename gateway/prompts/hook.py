"""The prompt stage: a chat request naming a registry prompt gets its rendered messages and defaults.

Two ways to name one (chat completions only):
- the extension field `"prompt": {"id": "support-triage", "label": "production", "variables": {...}}`
  (`"version": 3` instead of `label` pins a version; neither means `latest`);
- the shorthand `"model": "prompt:support-triage@production"` (`@3` pins a version, no `@` means latest),
  with variables still given in `"prompt": {"variables": {...}}`.
The rendered messages come first, then the request's own messages. Request fields win over the prompt's
defaults (params, tools, response_format); the model is the request's, except with the shorthand, which
takes the prompt's default model. The upstream never sees the `prompt` field.
Every render is bounded (prompts/sandbox.py); one that outgrows its small share of the event loop starts over in
a worker thread, so the loop keeps serving. The rendered request must fit in max_request_bytes like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable

import anyio.to_thread
import orjson

from gateway.calls.context import CallContext
from gateway.errors import InvalidRequest
from gateway.pipeline.hooks import BaseHook
from gateway.prompts.registry import PromptRegistry
from gateway.prompts.sandbox import RenderDeferred

SHORTHAND = "prompt:"
FIELDS = frozenset({"id", "label", "version", "variables"})


def reference(body: dict[str, object]) -> tuple[str, str | None, int | None, dict[str, object]] | None:
    """(id, label, version, variables) named by a request, or None; raises InvalidRequest for a malformed one."""
    field = body.get("prompt")
    model = body.get("model")
    shorthand = isinstance(model, str) and model.startswith(SHORTHAND)
    if field is None and not shorthand:
        return None
    if field is not None and not isinstance(field, dict):
        raise InvalidRequest("prompt must be an object: {id, label or version, variables}.", param="prompt")
    field = field or {}
    stray = sorted(set(field) - FIELDS)
    if stray:
        raise InvalidRequest(f"Unknown field prompt.{stray[0]}; expected id, label, version, variables.",
                             param=f"prompt.{stray[0]}")  # fmt: skip
    prompt_id, label, version = field.get("id"), field.get("label"), field.get("version")
    if shorthand:
        name, _, pin = str(model)[len(SHORTHAND) :].partition("@")
        if prompt_id is not None and prompt_id != name:
            raise InvalidRequest(f"model names prompt {name!r} but prompt.id is {prompt_id!r}.", param="prompt.id")
        prompt_id = name
        if pin:
            label, version = (None, int(pin)) if pin.isdigit() else (pin, None)
    if not isinstance(prompt_id, str) or not prompt_id:
        raise InvalidRequest("prompt.id is required: the registry prompt's id.", param="prompt.id")
    if label is not None and version is not None:
        raise InvalidRequest("Give prompt.label or prompt.version, not both.", param="prompt.version")
    if label is not None and not isinstance(label, str):
        raise InvalidRequest("prompt.label must be a string.", param="prompt.label")
    if version is not None and (type(version) is not int or version < 1):
        raise InvalidRequest("prompt.version must be a version number (1, 2, ...).", param="prompt.version")
    variables = field.get("variables", {})
    if not isinstance(variables, dict):
        raise InvalidRequest("prompt.variables must be an object of name: value.", param="prompt.variables")
    return prompt_id, label, version, variables


def fresh(value: object) -> object:
    """A copy of a JSON value for one call's body (scalars are immutable and shared)."""
    return orjson.loads(orjson.dumps(value)) if isinstance(value, dict | list) else value


class PromptHook(BaseHook):
    name = "prompts"

    def __init__(self, registry: PromptRegistry, *, max_request_bytes: int) -> None:
        self.registry = registry
        self.max_request_bytes = max_request_bytes

    def before_request(self, ctx: CallContext) -> Awaitable[None] | None:
        if ctx.operation != "chat" or ("prompt" not in ctx.body and not ctx.model.startswith(SHORTHAND)):
            return None  # the common path: no prompt named, nothing else done (and no coroutine made)
        return self._render(ctx)

    async def _render(self, ctx: CallContext) -> None:
        found = reference(ctx.body)
        if found is None:  # "prompt": null
            ctx.body.pop("prompt", None)
            return
        prompt_id, label, version, variables = found
        compiled = await self.registry.resolve(prompt_id, label=label, version=version)
        spec = compiled.spec
        body = ctx.body
        limit = self.max_request_bytes
        try:
            rendered = compiled.render(variables, max_chars=limit, inline=True)
        except RenderDeferred:  # a long render: from the start again, in a worker thread with the full budget
            rendered = await anyio.to_thread.run_sync(lambda: compiled.render(variables, max_chars=limit))
        size = len(ctx.raw) + sum(len(str(m["content"]).encode()) for m in rendered)
        if size > limit:
            raise InvalidRequest(
                f"Prompt {prompt_id!r} version {compiled.version} rendered a request of {size} bytes, over this "
                f"gateway's limit of {limit} bytes (max_request_bytes).",
                param="prompt",
                code="prompt_render_limit",
            )
        if str(body.get("model", "")).startswith(SHORTHAND):
            if spec.model is None:
                raise InvalidRequest(
                    f"Prompt {prompt_id!r} version {compiled.version} has no default model; send a model name.",
                    param="model",
                )
            body["model"] = spec.model
        # Copies: later stages may edit the body in place, and the compiled version is shared by every call.
        for name, value in spec.params.items():
            if name not in body:
                body[name] = fresh(value)
        if spec.tools is not None and "tools" not in body:
            body["tools"] = fresh(spec.tools)
        if spec.response_format is not None and "response_format" not in body:
            body["response_format"] = fresh(spec.response_format)
        body["messages"] = rendered + list(body.get("messages") or [])  # type: ignore[call-overload]
        body.pop("prompt", None)
        ctx.model = str(body["model"])
        ctx.prompt_id, ctx.prompt_version = prompt_id, compiled.version
