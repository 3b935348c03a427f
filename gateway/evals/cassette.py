"""Cassettes: upstream answers recorded once (`--record F`) and replayed in CI (`--replay F`) without a provider key.

They sit at the provider boundary, in process only: every stage of the gateway (auth, prompts, guardrails, tool
rules, metering, records) runs for real around a replayed answer, so governance assertions stay meaningful. A
cassette maps (the deployment's `provider/model`, the operation, the canonical JSON of the body the provider was sent)
to the provider's answer: a JSON body, or a stream's SSE events. Recording merges into an existing file; the file is
JSON, sorted by key, with the request kept readable so a diff shows what changed. A request missing from the cassette
fails the call with `not_in_cassette` (502), which the runner reports as that case's error. Models computed in process
(`fake/...`, `local/...`) answer the same in CI without a key, so they are neither recorded nor replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from gateway.errors import GatewayError
from gateway.providers.base import Deployment, JSONObject, Operation, Provider, Reply

if TYPE_CHECKING:
    from gateway.config import ModelConfig
    from gateway.providers.registry import ProviderRegistry

FORMAT = "gateway-eval-cassette/1"
NOT_IN_CASSETTE = "not_in_cassette"
IN_PROCESS = frozenset({"fake", "local"})  # providers computed in process, deterministic: never recorded or replayed


class CassetteError(Exception):
    """The cassette file cannot be read (missing, not JSON, another format): an invalid argument (exit 2)."""


class NotInCassette(GatewayError):
    status_code = 502
    type = "upstream_error"
    code = NOT_IN_CASSETTE


def interaction_key(model: str, op: str, body: JSONObject) -> str:
    canonical = orjson.dumps({"model": model, "op": op, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class Cassette:
    """One cassette file, in memory while the run lasts; `save()` writes what a recording added."""

    def __init__(self, path: Path, mode: Literal["record", "replay"]) -> None:
        self.path = path
        self.mode = mode
        self.interactions: dict[str, dict[str, Any]] = {}
        self.recorded = 0
        self.replayed = 0
        if mode == "replay" and not path.is_file():
            raise CassetteError(f"{path}: no such cassette (record one with --record {path})")
        if path.is_file():
            self.interactions = read_cassette(path)

    def install(self, registry: ProviderRegistry) -> None:
        """Puts this cassette in front of every configured deployment's provider."""
        registry.wrap_providers(self._wrap)

    def _wrap(self, deployment: Deployment) -> Provider:
        if deployment.config.provider in IN_PROCESS:  # answers the same in CI without a key: not taped
            return deployment.provider
        if self.mode == "record":
            return Recorder(self, deployment.provider)
        return Replayer(self)

    def lookup(self, model: ModelConfig, op: Operation, body: JSONObject) -> dict[str, Any]:
        entry = self.interactions.get(interaction_key(model.model, op, body))
        if entry is None:
            raise NotInCassette(
                f"Not in cassette {self.path}: no recorded answer of {model.model} for this {op} request "
                f"(re-record it with --record {self.path})."
            )
        self.replayed += 1
        return entry["response"]  # type: ignore[no-any-return]

    def add(self, model: ModelConfig, op: Operation, body: JSONObject, response: dict[str, Any]) -> None:
        key = interaction_key(model.model, op, body)
        self.interactions[key] = {"model": model.model, "op": op, "request": body, "response": response}
        self.recorded += 1

    def save(self) -> None:
        if self.mode != "record":
            return
        data = {
            "format": FORMAT,
            "interactions": [{"key": k, **self.interactions[k]} for k in sorted(self.interactions)],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def read_cassette(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CassetteError(f"{path}: cannot read the cassette: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("interactions"), list):
        raise CassetteError(f"{path}: not a cassette (expected an object with format {FORMAT!r} and interactions)")
    interactions = {}
    for item in data["interactions"]:
        if isinstance(item, dict) and isinstance(item.get("response"), dict):
            key = interaction_key(str(item.get("model")), str(item.get("op")), item.get("request") or {})
            interactions[key] = {k: v for k, v in item.items() if k != "key"}
    return interactions


class Recorder:
    """Calls the real provider and keeps what it answered (errors are not recorded: a replay would miss them)."""

    def __init__(self, cassette: Cassette, inner: Provider) -> None:
        self.cassette = cassette
        self.inner = inner

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        request = orjson.loads(orjson.dumps(body))  # as sent, before a later stage could touch the dict
        reply = await self.inner.send(op, model, body)
        self.cassette.add(model, op, request, {"body": reply.data})
        return reply

    async def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        request = orjson.loads(orjson.dumps(body))
        events: list[str] = []
        async for event in self.inner.stream(op, model, body):
            events.append(event.decode())
            yield event
        self.cassette.add(model, op, request, {"events": events})


class Replayer:
    """Answers from the cassette alone; never reaches an upstream."""

    def __init__(self, cassette: Cassette) -> None:
        self.cassette = cassette

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        response = self.cassette.lookup(model, op, body)
        if "body" not in response:
            raise NotInCassette(f"Cassette {self.cassette.path} holds a stream for this request, not a JSON answer.")
        data = response["body"]
        return Reply(orjson.dumps(data), data)

    async def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        response = self.cassette.lookup(model, op, body)
        if "events" in response:
            for event in response["events"]:
                yield event.encode()
            return
        # Recorded as JSON, asked as a stream: not the same request (stream is part of the body), so never here.
        raise NotInCassette(f"Cassette {self.cassette.path} holds a JSON answer for this request, not a stream.")
