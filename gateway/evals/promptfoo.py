"""`gateway eval import promptfoo FILE`: a promptfoo config's common subset as a suite file, and a list of what could
not be converted (each entry names where it is in the promptfoo file and why).

Converted: `description`; `providers` (or `targets`) as the suite's targets, by model name (`openai:gpt-4o-mini` and
`openai:chat:gpt-4o-mini` become `gpt-4o-mini`: the gateway's public names must match) and their shared request
`config` (temperature, max_tokens, ...) as `defaults.request`; `prompts` (text, `file://` text or JSON chat files,
`{raw, label}`) as each case's input or messages (several prompts: one case per test and prompt); `defaultTest`
(`assert`, `vars`, `threshold`) as `defaults`; `tests[]` (`description`, `vars`, `assert`, `threshold`) as cases;
`tests: file://rows.csv` as a dataset. Assertions keep their `value`, `threshold`, `weight`, `metric` and `not-` form:
equals, contains, icontains, contains-any/all, icontains-any/all, starts-with, regex, is-json (`is-json` with a
schema becomes `json-schema`), levenshtein, latency, cost, finish-reason, similar, llm-rubric (as `llm_judge`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SAME = frozenset({"equals", "contains", "icontains", "contains-any", "contains-all", "icontains-any", "icontains-all",
                  "starts-with", "regex", "is-json", "levenshtein", "latency", "cost", "finish-reason",
                  "similar"})  # fmt: skip
LISTS = frozenset({"contains-any", "contains-all", "icontains-any", "icontains-all"})
DEFAULT_THRESHOLD = {"similar": 0.75, "levenshtein": 5}  # promptfoo's defaults, kept explicit (ours differ)
ASSERTION_FIELDS = frozenset({"type", "value", "threshold", "weight", "metric", "provider"})
REQUEST_FIELDS = frozenset({"temperature", "max_tokens", "top_p", "presence_penalty", "frequency_penalty", "seed",
                            "stop", "response_format", "tools", "tool_choice", "max_completion_tokens"})  # fmt: skip
PROVIDER_MODES = frozenset({"chat", "completion", "messages", "responses", "embedding", "embeddings"})
IGNORED_KEYS = frozenset({"description", "prompts", "providers", "targets", "tests", "defaultTest"})


class PromptfooError(ValueError):
    """A file that is not a promptfoo config this importer can read."""


def import_promptfoo(path: str | Path) -> tuple[str, list[str]]:
    """(the suite file's text, what could not be converted)."""
    return _Importer(Path(path)).run()


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


class _Importer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.unsupported: list[str] = []
        self.judge = "CHANGE-ME"  # promptfoo's default grader is OpenAI's; a suite names its judge: the first target

    def skip(self, where: str, why: str) -> None:
        self.unsupported.append(f"{where}: {why}")

    def run(self) -> tuple[str, list[str]]:
        try:
            config = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise PromptfooError(f"{self.path}: cannot read the promptfoo config ({exc})") from None
        if not isinstance(config, dict):
            raise PromptfooError(f"{self.path}: expected a promptfoo config (a mapping with prompts, providers, tests)")
        for key in config:
            if key not in IGNORED_KEYS:
                self.skip(str(key), "no equivalent in a suite file")
        description = config.get("description")
        suite: dict[str, Any] = {"name": slug(str(description or "")) or slug(self.path.stem) or "imported"}
        if isinstance(description, str):
            suite["description"] = description
        suite["targets"], request = self.targets(config.get("providers", config.get("targets")))
        self.judge = suite["targets"][0]
        prompts = self.prompts(config.get("prompts"))
        defaults = self.defaults(config.get("defaultTest"), request)
        if defaults:
            suite["defaults"] = defaults
        tests = config.get("tests")
        if isinstance(tests, str):
            self.dataset(suite, tests, prompts)
        elif isinstance(tests, list) and tests:
            suite["cases"] = self.cases(tests, prompts, config.get("defaultTest"))
        else:
            raise PromptfooError(f"{self.path}: no tests to convert")
        header = (f"# yaml-language-server: $schema=schema.json\n# Converted from {self.path.name} by "
                  f"`gateway eval import promptfoo`; targets are the gateway's public model names.\n")  # fmt: skip
        return header + yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=100), self.unsupported

    def targets(self, providers: object) -> tuple[list[str], dict[str, Any]]:
        entries = providers if isinstance(providers, list) else [providers] if providers else []
        targets: list[str] = []
        requests: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            where = f"providers[{i}]"
            config: object = {}
            if isinstance(entry, dict) and "id" not in entry and len(entry) == 1:
                (entry, config), = entry.items()  # fmt: skip  # the older {provider-id: {config}} form
            elif isinstance(entry, dict):
                entry, config = entry.get("id"), entry.get("config") or {}
            model = self.model(entry, where)
            if model is None:
                continue
            targets.append(model)
            request = {}
            for key, value in config.items() if isinstance(config, dict) else []:
                if key in REQUEST_FIELDS:
                    request[key] = value
                else:
                    self.skip(f"{where}.config.{key}", "not a request field (the gateway's config holds providers)")
            requests.append(request)
        if not targets:
            self.skip("providers", "no model provider to convert: set targets to your gateway's model names")
            targets.append("CHANGE-ME")
        shared = requests[0] if requests and all(r == requests[0] for r in requests) else {}
        if requests and not shared and any(requests):
            self.skip("providers", "the providers' configs differ: a suite sends the same request to every target")
        return targets, shared

    def model(self, entry: object, where: str) -> str | None:
        if not isinstance(entry, str) or not entry:
            self.skip(where, f"unsupported provider {entry!r}")
            return None
        if entry.startswith(("file://", "exec:", "python:", "http", "webhook", "echo", "sequence")):
            self.skip(where, f"provider {entry} has no equivalent: a target is a model or prompt of the gateway")
            return None
        parts = entry.split(":")
        rest = parts[1:] if len(parts) > 1 else parts
        if len(rest) > 1 and rest[0] in PROVIDER_MODES:
            rest = rest[1:]
        return ":".join(rest)

    def prompts(self, prompts: object) -> list[tuple[str, dict[str, Any]]]:
        """(label, {"input": text} or {"messages": [...]}) for each prompt."""
        entries = prompts if isinstance(prompts, list) else [prompts] if prompts else []
        converted = []
        for i, entry in enumerate(entries):
            where, label = f"prompts[{i}]", ""
            if isinstance(entry, dict):
                label = slug(str(entry.get("label") or ""))
                entry = entry.get("raw", entry.get("id"))
            if not isinstance(entry, str):
                self.skip(where, f"unsupported prompt {entry!r}")
                continue
            if entry.startswith("file://"):
                target = self.path.parent / entry.removeprefix("file://")
                if target.suffix not in (".txt", ".md", ".json", ".j2", ".jinja", ".prompt") or not target.is_file():
                    self.skip(where, f"prompt {entry} is not a readable text or JSON chat file")
                    continue
                label, entry = label or slug(target.stem), target.read_text(encoding="utf-8")
            converted.append((label or f"p{i + 1}", self.prompt_body(entry)))
        if not converted:
            self.skip("prompts", "no prompt to convert: each case sends its vars' `input` (edit as needed)")
            converted.append(("p1", {"input": "{{ input }}"}))
        return converted

    def prompt_body(self, text: str) -> dict[str, Any]:
        try:
            messages = json.loads(text)
        except ValueError:
            return {"input": text}
        if isinstance(messages, list) and messages and all(isinstance(m, dict) and "role" in m for m in messages):
            return {"messages": messages}
        return {"input": text}

    def defaults(self, default_test: object, request: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        if isinstance(default_test, dict):
            for key in default_test:
                if key not in ("assert", "vars", "threshold"):
                    self.skip(f"defaultTest.{key}", "no equivalent in a suite's defaults")
            assertions = self.assertions(default_test.get("assert"), "defaultTest")
            if assertions:
                defaults["assert"] = assertions
            if isinstance(default_test.get("threshold"), int | float):
                defaults["threshold"] = default_test["threshold"]
        if request:
            defaults["request"] = request
        return defaults

    def cases(self, tests: list[Any], prompts: list[tuple[str, dict[str, Any]]], default: object) -> list[Any]:
        shared_vars = default.get("vars") if isinstance(default, dict) else None
        cases: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, test in enumerate(tests):
            where = f"tests[{i}]"
            if not isinstance(test, dict):
                self.skip(where, "a test given as a file reference or text is not converted")
                continue
            for key in test:
                if key not in ("description", "vars", "assert", "threshold"):
                    self.skip(f"{where}.{key}", "no equivalent in a suite case")
            base = slug(str(test.get("description") or "")) or f"test-{i + 1}"
            own = test.get("vars") or {}
            if not isinstance(own, dict):
                self.skip(f"{where}.vars", "vars that are not a mapping of name: value are not converted")
                own = {}
            variables = {**(shared_vars if isinstance(shared_vars, dict) else {}), **own}
            for name, value in variables.items():
                if isinstance(value, str) and value.startswith("file://"):
                    self.skip(f"{where}.vars.{name}", "a file:// variable is kept as its text, not the file's content")
                elif isinstance(value, list):
                    self.skip(f"{where}.vars.{name}", "a list does not expand into several cases as in promptfoo")
            assertions = self.assertions(test.get("assert"), where)
            for label, body in prompts:
                case_id = base if len(prompts) == 1 else f"{base}-{label}"
                while case_id in seen:
                    case_id = f"{case_id}-{i + 1}"
                seen.add(case_id)
                case: dict[str, Any] = {"id": case_id}
                if test.get("description"):
                    case["description"] = str(test["description"])
                case.update(body)
                if variables:
                    case["vars"] = variables
                if assertions:
                    case["assert"] = assertions
                if isinstance(test.get("threshold"), int | float):
                    case["threshold"] = test["threshold"]
                cases.append(case)
        return cases

    def dataset(self, suite: dict[str, Any], tests: str, prompts: list[tuple[str, dict[str, Any]]]) -> None:
        suite["dataset"] = tests.removeprefix("file://")
        suite["template"] = dict(prompts[0][1])
        self.skip("tests", f"rows of {tests} become a dataset (relative to the suite file); their __ columns "
                           f"(__expected, ...) are not converted")  # fmt: skip
        if len(prompts) > 1:
            self.skip("prompts", "with a dataset only the first prompt is converted")

    def assertions(self, assertions: object, where: str) -> list[dict[str, Any]]:
        converted = []
        for j, assertion in enumerate(assertions if isinstance(assertions, list) else []):
            result = self.assertion(assertion, f"{where}.assert[{j}]")
            if result is not None:
                converted.append(result)
        return converted

    def assertion(self, assertion: object, where: str) -> dict[str, Any] | None:
        if not isinstance(assertion, dict) or not isinstance(assertion.get("type"), str):
            self.skip(where, "not an assertion with a type")
            return None
        kind = assertion["type"]
        negated, base = kind.startswith("not-"), kind.removeprefix("not-")
        value = assertion.get("value")
        for key in assertion:
            if key not in ASSERTION_FIELDS:
                self.skip(f"{where}.{key}", f"{key} of a {kind} assertion is not converted")
        if base == "llm-rubric":
            if negated:
                self.skip(where, "not-llm-rubric: write the rubric the other way round")
                return None
            out: dict[str, Any] = {"type": "llm_judge", "rubric": value}
            provider = assertion.get("provider")
            provider = provider.get("id") if isinstance(provider, dict) else provider
            if provider is not None and (model := self.model(provider, f"{where}.provider")) is not None:
                out["model"] = model
            else:
                out["model"] = self.judge
                self.skip(where, f"llm-rubric without a provider: judged by {self.judge!r}; set model: to your judge")
        elif base == "is-json" and value is not None:
            out = {"type": f"{'not-' if negated else ''}json-schema", "value": value}
        elif base in SAME:
            out = {"type": kind}
            if value is not None:
                out["value"] = (
                    [v.strip() for v in value.split(",")] if base in LISTS and isinstance(value, str) else value
                )
            if base in DEFAULT_THRESHOLD and "threshold" not in assertion:
                out["threshold"] = DEFAULT_THRESHOLD[base]
        else:
            self.skip(where, f"{kind} has no equivalent" + (
                ": rewrite it as a deterministic assertion" if base in ("javascript", "python") else ""))  # fmt: skip
            return None
        for key in ("threshold", "metric"):
            if assertion.get(key) is not None:
                out[key] = assertion[key]
        weight = assertion.get("weight")
        if isinstance(weight, int | float) and weight > 0 and weight != 1:
            out["weight"] = weight
        elif weight == 0:
            self.skip(f"{where}.weight", "weight 0 (informational) is not supported: the assertion counts with 1")
        return out


def add_import_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`gateway eval import promptfoo FILE [--out SUITE.yaml]`: the suite on stdout (or in --out), what was not
    converted on stderr; exit 0, or 2 when the file is not a promptfoo config."""
    importing = commands.add_parser("import", help="convert another tool's eval config into a suite")
    tools = importing.add_subparsers(dest="import_tool", required=True)
    promptfoo = tools.add_parser("promptfoo", help="a promptfooconfig.yaml: its common subset")
    promptfoo.add_argument("file", type=Path, help="the promptfoo config")
    promptfoo.add_argument("--out", type=Path, help="write the suite here (default: stdout)")
    promptfoo.set_defaults(handler=cmd_import_promptfoo)


def cmd_import_promptfoo(args: argparse.Namespace) -> int:
    try:
        text, unsupported = import_promptfoo(args.file)
    except PromptfooError as exc:
        print(f"gateway eval import: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if unsupported:
        print(f"not converted ({len(unsupported)}):", file=sys.stderr)
        for line in unsupported:
            print(f"  {line}", file=sys.stderr)
    return 0
