"""Policy files: schema in sync, errors that name file and field, composition and scoping, reload, CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.checks.context import build_check
from gateway.cli import main
from gateway.policy.loader import PolicyError, load_policies
from gateway.policy.spec import SCHEMA_PATH, policy_schema
from gateway.policy.store import PolicyStore

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_committed_schema_matches_the_model() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == policy_schema(), "run: python -m gateway.policy.spec"


def test_shipped_policies_load_and_their_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(REPO / "policies")]) == 0
    assert "default [enforce]" in capsys.readouterr().out
    assert main(["policy", "test", str(REPO / "policies"), str(REPO / "policies/tests/cases.yaml")]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and " 0 failed" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: p\nguardrails:\n  - {id: a, stage: middle, check: pii}\n",
            "guardrails[0].stage: Input should be 'input' or 'output'",
        ),
        (
            "name: p\nguardrails:\n  - {id: a, stage: input, check: pii, acton: block}\n",
            "guardrails[0].acton: Extra inputs",
        ),
        ("name: p\nguardrails:\n  - {id: a, stage: input, check: nope}\n", "guardrails[0].check 'nope': unknown check"),
        (
            "name: p\nguardrails:\n  - {id: a, stage: input, check: injection, params: {treshold: 1}}\n",
            "guardrails[0].check 'injection'",
        ),
        (
            "name: p\nguardrails:\n  - {id: a, stage: input, check: pii}\n  - {id: a, stage: output, check: pii}\n",
            "duplicate guardrail id 'a'",
        ),
        ("name: p\nmode: loud\n", "mode: Input should be 'enforce' or 'shadow'"),
        ("- not a mapping\n", "expected a policy"),
    ],
)
def test_bad_policy_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "p.yaml", text)
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path)
    assert str(caught.value).startswith(str(path)) and expected in str(caught.value), str(caught.value)


def test_rule_ids_are_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\nguardrails:\n  - {id: same, stage: input, check: pii}\n")
    write(tmp_path, "b.yaml", "name: b\nguardrails:\n  - {id: same, stage: input, check: pii}\n")
    with pytest.raises(PolicyError, match="'same' is also used in"):
        load_policies(tmp_path)


def test_scoping_by_team_model_and_route(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: all\nguardrails:\n  - {id: g-all, stage: input, check: pii}\n")
    write(
        tmp_path,
        "b.yaml",
        "name: research\napplies_to: {teams: [research], models: ['gpt-4*'], routes: [chat]}\n"
        "guardrails:\n  - {id: g-research, stage: input, check: secrets}\n",
    )
    policies = load_policies(tmp_path)

    def ids(team: str | None, model: str, route: str) -> list[str]:
        found = policies.guardrails_for(key=frozenset(), team=(None, team), model=model, route=route)
        return [g.id for g in found["input"]]

    assert ids("research", "gpt-4o", "chat") == ["g-all", "g-research"]
    assert ids("research", "claude", "chat") == ["g-all"]
    assert ids("research", "gpt-4o", "embeddings") == ["g-all"]
    assert ids("other", "gpt-4o", "chat") == ["g-all"]
    assert ids(None, "gpt-4o", "chat") == ["g-all"]


def test_sha256_changes_with_any_byte(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "name: a\n")
    first = load_policies(tmp_path).sha256
    path.write_text("name: a\n# comment\n")
    assert load_policies(tmp_path).sha256 != first


async def test_store_reloads_on_change_and_keeps_the_old_set_when_the_new_one_is_bad(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "name: a\nguardrails:\n  - {id: g1, stage: input, check: pii}\n")
    store = PolicyStore(str(tmp_path), build_check)
    first = store.current.sha256
    watcher = asyncio.create_task(store.watch(interval_s=0.02))
    try:
        path.write_text("name: a\nguardrails:\n  - {id: g2, stage: input, check: pii}\n")
        for _ in range(100):
            if store.current.sha256 != first:
                break
            await asyncio.sleep(0.02)
        assert [g.id for g in store.current.policies[0].guardrails] == ["g2"]
        good = store.current.sha256
        path.write_text("name: a\nguardrails:\n  - {id: g3, stage: nowhere, check: pii}\n")
        for _ in range(100):
            if store.last_error:
                break
            await asyncio.sleep(0.02)
        assert store.last_error is not None and "guardrails[0].stage" in store.last_error
        assert store.current.sha256 == good  # the bad version was refused
    finally:
        watcher.cancel()


def test_policy_test_cli_fails_on_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "p.yaml", "name: p\nguardrails:\n  - {id: pii-in, stage: input, check: pii, action: redact}\n")
    cases = write(
        tmp_path.parent,
        "cases.yaml",
        "cases:\n  - {name: wrong on purpose, text: 'mail a@b.example.com', expect: allow}\n",
    )
    assert main(["policy", "test", str(tmp_path), str(cases)]) == 1
    out = capsys.readouterr().out
    assert "FAIL wrong on purpose: redact (rules pii-in)" in out and "0 passed, 1 failed" in out


def test_readme_example_policy_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Policies and guardrails") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml\n"))]
    write(tmp_path, "example.yaml", example)
    (policy,) = load_policies(tmp_path).policies
    assert policy.name == "support-bots" and len(policy.guardrails) == 7


def test_tool_rules_load_in_the_same_file_and_errors_name_their_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "name: agents\ntools:\n  default: deny\n  rules:\n"
        "    - {id: refund-small, match: payments.refund, when: [{arg: amount, lte: 100}], action: allow}\n"
        "    - {id: refund-large, match: payments.refund, when: [{arg: amount, gt: 100}], action: require_approval,"
        " expires_after: 15m}\n",
    )
    policies = load_policies(tmp_path)
    (rules,) = policies.tool_rules_for(key=frozenset(), team=(None, None), model="m", route="chat")
    assert [r.id for r in rules.rules] == ["refund-small", "refund-large"]
    write(
        tmp_path,
        "b.yaml",
        "name: b\ntools:\n  default: allow\n  rules:\n"
        "    - {id: r, match: x, when: [{arg: a, regex: '('}], action: deny}\n",
    )
    with pytest.raises(PolicyError, match=r"b.yaml: tools.rules\[0\].when\[0\].regex"):
        load_policies(tmp_path)


def test_policy_test_cli_judges_tool_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = "name: p\ntools:\n  default: deny\n  rules:\n    - {id: read, match: 'fs.read', action: allow}\n"
    write(tmp_path, "p.yaml", policy)
    cases = write(
        tmp_path.parent,
        "cases.yaml",
        "cases:\n"
        "  - {name: reads pass, stage: tool, tool: fs.read, arguments: {path: /tmp/x}, expect: allow}\n"
        "  - {name: writes fall to the default, stage: tool, tool: fs.write, arguments: {}, expect: allow}\n",
    )
    assert main(["policy", "test", str(tmp_path), str(cases)]) == 1
    out = capsys.readouterr().out
    assert "ok   reads pass: allow (rules read)" in out
    assert "FAIL writes fall to the default: deny (rules default)" in out
    bad = write(tmp_path.parent, "bad.yaml", "cases:\n  - {name: no tool, stage: tool, expect: deny}\n")
    assert main(["policy", "test", str(tmp_path), str(bad)]) == 2
    assert "a tool case needs tool and arguments" in capsys.readouterr().err


def test_readme_tool_rules_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Agent tool calls and approvals") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml\n"))]
    write(tmp_path, "example.yaml", "name: readme\n" + example)
    (policy,) = load_policies(tmp_path).policies
    assert policy.tools is not None and [rule.id for rule in policy.tools.rules] == ["big-refunds"]
