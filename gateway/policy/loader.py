"""Reads policy YAML (a file or a folder of them) into a PolicySet; errors name the file and the field path.

The set's sha256 covers every file's name and bytes, so each recorded decision names exactly the policy
text that made it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from gateway.checks.base import Check
from gateway.checks.context import ContextCheck, build_check
from gateway.config import ConfigError, format_validation_error, parse_yaml
from gateway.policy.spec import Action, Mode, PolicyFile, Stage
from gateway.toolcalls.rules import CompiledToolRules, compile_tool_rules, glob_pattern

POLICY_SUFFIXES = (".yaml", ".yml")
NO_KEY: frozenset[str] = frozenset()  # the master key's aliases: only policies without applies_to.keys apply


class PolicyError(ConfigError):
    """A policy file that cannot be used: names the file, the field path and what was expected."""


@dataclass(frozen=True, slots=True)
class CompiledGuardrail:
    id: str
    policy: str
    stage: Stage
    action: Action
    mode: Mode
    check_name: str
    check: Check | ContextCheck
    message: str | None
    # Decided once at load: isinstance() on a runtime-checkable Protocol cost 17% of CPU under load.
    is_context: bool = False


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    source: str
    mode: Mode
    keys: frozenset[str] | None
    teams: frozenset[str] | None
    models: re.Pattern[str] | None
    routes: frozenset[str] | None
    guardrails: tuple[CompiledGuardrail, ...]
    tools: CompiledToolRules | None = None

    def applies(self, *, key: frozenset[str], team: tuple[str | None, str | None], model: str, route: str) -> bool:
        """key is the caller key's aliases (its id and every prefix it has had; empty for the master key), so a
        policy naming a key by a prefix keeps applying after rotation; team is (id, name); None matches only an
        absent filter."""
        if self.routes is not None and route not in self.routes:
            return False
        if self.models is not None and not self.models.fullmatch(model):
            return False
        if self.keys is not None and self.keys.isdisjoint(key):
            return False
        return self.teams is None or bool(self.teams & {t for t in team if t})


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy in force, and the sha256 that identifies this exact set."""

    policies: tuple[CompiledPolicy, ...]
    sha256: str
    files: tuple[str, ...]
    _cache: dict[tuple[object, ...], dict[str, tuple[CompiledGuardrail, ...]]] = field(default_factory=dict)
    empty: bool = field(init=False)  # no guardrail and no tool rule: the stages skip all their work

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", not any(policy.guardrails or policy.tools for policy in self.policies))

    def guardrails_for(self, *, key: frozenset[str], team: tuple[str | None, str | None],
                       model: str, route: str) -> dict[str, tuple[CompiledGuardrail, ...]]:  # fmt: skip
        """The guardrails that govern one call, by stage; memoised per (key, team, model, route)."""
        cache_key = (key, team, model, route)
        found = self._cache.get(cache_key)
        if found is None:
            by_stage: dict[str, list[CompiledGuardrail]] = {"input": [], "output": []}
            for policy in self.policies:
                if policy.applies(key=key, team=team, model=model, route=route):
                    for guardrail in policy.guardrails:
                        by_stage[guardrail.stage].append(guardrail)
            found = {stage: tuple(items) for stage, items in by_stage.items()}
            if len(self._cache) < 10_000:  # bounded: key ids and model names are finite, but be safe
                self._cache[cache_key] = found
        return found

    def tool_rules_for(self, *, key: frozenset[str], team: tuple[str | None, str | None],
                       model: str, route: str) -> tuple[CompiledToolRules, ...]:  # fmt: skip
        """The tool rules of every policy that governs this call, in set order (shadow ones included); memoised
        per (key, team, model, route) like guardrails_for."""
        cache_key = ("tools", key, team, model, route)
        found = self._cache.get(cache_key)
        if found is None:
            found = tuple(
                policy.tools
                for policy in self.policies
                if policy.tools is not None and policy.applies(key=key, team=team, model=model, route=route)
            )
            if len(self._cache) < 10_000:
                self._cache[cache_key] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]


EMPTY = PolicySet(policies=(), sha256=hashlib.sha256(b"").hexdigest(), files=())


def unknown_keys(policies: PolicySet, known: Collection[str]) -> list[str]:
    """One warning per applies_to.keys entry that is neither a key id nor a prefix any key has had (a typo, or a
    key of another database): such an entry matches no call. `known` is the key cache's `names`."""
    return [
        f"{policy.source}: applies_to.keys: {ref!r} matches no key (neither a key id nor a prefix any key has had)"
        for policy in policies.policies
        for ref in sorted(policy.keys or ())
        if ref not in known
    ]


def policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in POLICY_SUFFIXES and p.is_file())
    if not path.exists():
        raise PolicyError(f"{path}: no such policy file or folder")
    return [path]


def parse_policy(text: str, source: str) -> PolicyFile:
    data = parse_yaml(text, source, PolicyError)
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a policy (a mapping with name, guardrails, ...)")
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(format_validation_error(source, exc)) from None


MakeCheck = Callable[[str, dict[str, object]], Check | ContextCheck]


def compile_policy(policy: PolicyFile, source: str, make_check: MakeCheck = build_check) -> CompiledPolicy:
    guardrails = []
    for i, guardrail in enumerate(policy.guardrails):
        try:
            check = make_check(guardrail.check, dict(guardrail.params))
        except (TypeError, ValueError, LookupError) as exc:
            raise PolicyError(f"{source}: guardrails[{i}].check {guardrail.check!r}: {exc}") from None
        guardrails.append(
            CompiledGuardrail(
                id=guardrail.id,
                policy=policy.name,
                stage=guardrail.stage,
                action=guardrail.action,
                mode=policy.mode,
                check_name=guardrail.check,
                check=check,
                message=guardrail.message,
                is_context=isinstance(check, ContextCheck),
            )
        )
    scope = policy.applies_to
    return CompiledPolicy(
        name=policy.name,
        source=source,
        mode=policy.mode,
        keys=frozenset(scope.keys) if scope.keys is not None else None,
        teams=frozenset(scope.teams) if scope.teams is not None else None,
        models=glob_pattern(scope.models) if scope.models is not None else None,
        routes=frozenset(scope.routes) if scope.routes is not None else None,
        guardrails=tuple(guardrails),
        tools=compile_tool_rules(policy.tools, policy=policy.name, shadow=policy.mode == "shadow")
        if policy.tools is not None
        else None,
    )


def load_policies(path: str | Path, make_check: MakeCheck = build_check) -> PolicySet:
    """Every policy under path, compiled; raises PolicyError naming the file and the field path."""
    path = Path(path)
    digest = hashlib.sha256()
    policies: list[CompiledPolicy] = []
    files: list[str] = []
    seen_ids: dict[str, str] = {}
    seen_tool_ids: dict[str, str] = {}
    names: dict[str, str] = {}
    for file in policy_files(path):
        raw = file.read_bytes()
        digest.update(file.name.encode() + b"\0" + raw + b"\0")
        source = str(file)
        policy = parse_policy(raw.decode("utf-8", "replace"), source)
        if policy.name in names:
            raise PolicyError(f"{source}: name: policy {policy.name!r} is also defined in {names[policy.name]}")
        names[policy.name] = source
        for i, guardrail in enumerate(policy.guardrails):
            if guardrail.id in seen_ids:
                raise PolicyError(
                    f"{source}: guardrails[{i}].id: {guardrail.id!r} is also used in {seen_ids[guardrail.id]}"
                )
            seen_ids[guardrail.id] = source
        for i, tool_rule in enumerate(policy.tools.rules if policy.tools is not None else ()):
            if tool_rule.id in seen_tool_ids:
                raise PolicyError(
                    f"{source}: tools.rules[{i}].id: {tool_rule.id!r} is also used in {seen_tool_ids[tool_rule.id]}"
                )
            seen_tool_ids[tool_rule.id] = source
        policies.append(compile_policy(policy, source, make_check))
        files.append(source)
    return PolicySet(policies=tuple(policies), sha256=digest.hexdigest(), files=tuple(files))
