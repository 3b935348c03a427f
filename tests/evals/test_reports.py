"""The reports a CI job reads: JSON (the canonical result), JUnit XML, and the Markdown job summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from gateway.evals.baseline import compare
from gateway.evals.reports import MAX_ROWS, to_junit, to_markdown, write_reports
from tests.evals.results import assertion, item, result, sample


def test_the_json_report_is_the_canonical_result(tmp_path: Path) -> None:
    run = sample()
    write_reports(run, json_path=tmp_path / "out/result.json")
    assert json.loads((tmp_path / "out/result.json").read_text()) == run
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.json"]  # no temporary file left behind


def test_junit_has_one_testcase_per_case_and_target() -> None:
    root = ET.fromstring(to_junit(sample()))
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "shipped-policies", "tests": "6", "failures": "1", "errors": "1", "skipped": "1"}  # fmt: skip
    suites = root.findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) for s in suites] == [
        ("shipped-policies [gpt-4o-mini]", "3", "1", "1", "0"),
        ("shipped-policies [prompt:triage@staging]", "3", "0", "0", "1"),
    ]
    properties = {p.get("name"): p.get("value") for p in suites[1].find("properties") or []}
    assert properties == {"run_id": "evr_1", "target": "prompt:triage@staging", "suite_sha256": "a" * 64,
                          "git_commit": "abc123"}  # fmt: skip
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert sorted(cases) == sorted((f"shipped-policies.{t}", c) for t in ("gpt-4o-mini", "prompt:triage@staging")
                                   for c in ("blocks-ssn", "greets", "judged"))  # fmt: skip
    passed = cases[("shipped-policies.gpt-4o-mini", "blocks-ssn")]
    assert list(passed) == [] and passed.get("time") == "0.012"
    failure = cases[("shipped-policies.gpt-4o-mini", "greets")].find("failure")
    assert failure is not None and failure.get("type") == "AssertionFailed"
    assert failure.get("message") == (
        "icontains: output does not contain 'ada' (output: 'Hi | there'); latency: took 2500 ms, over 2000 ms"
    )
    assert "attempt 0: FAIL" in failure.text and "[FAILED] latency" in failure.text and "[ok] is-json" in failure.text
    out = cases[("shipped-policies.gpt-4o-mini", "greets")].find("system-out")
    assert out is not None and out.text == "Hi | there <b>\ufffd"  # a character XML cannot hold is replaced
    error = cases[("shipped-policies.gpt-4o-mini", "judged")].find("error")
    assert error is not None and error.get("message") == "llm_judge: the judge answered garbage 3 times"
    assert "[error] llm_judge" in error.text
    skipped = cases[("shipped-policies.prompt:triage@staging", "judged")].find("skipped")
    assert skipped is not None and skipped.get("message") == "not run"
    assert cases[("shipped-policies.prompt:triage@staging", "greets")].get("time") == "0.036"  # three attempts


def test_junit_of_repeats_says_the_pass_rate() -> None:
    run = result(item("flaky", "gpt-4o-mini", "failed", assertion("contains", False, "no 'x'"), repeats=3))
    run["results"][0].update(pass_rate=1 / 3, required_pass_rate=0.66)
    failure = ET.fromstring(to_junit(run)).find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == "pass rate 0.33 < required 0.66; contains: no 'x'"
    assert failure.text.count("attempt") == 3


def test_markdown_summary(tmp_path: Path) -> None:
    run = sample()
    run["status"], run["incomplete_reason"] = "incomplete", "cost cap of $0.50 reached after 5 of 6 cases"
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    write_reports(run, markdown_path=summary, append_markdown=True)
    text = summary.read_text()
    assert text.startswith("earlier step\n## ⚠️ Eval suite `shipped-policies`: incomplete\n")  # a job summary
    write_reports(run, markdown_path=tmp_path / "new" / "report.md")
    write_reports(run, markdown_path=tmp_path / "new" / "report.md")
    assert (tmp_path / "new" / "report.md").read_text() == text.removeprefix("earlier step\n")  # replaced
    assert "**3 of 6 passed**, 1 failed, 1 error, 1 skipped (pass rate 50.0 %) · cost $0.0123 + judge $0.0004" in text
    assert "> ⚠️ Incomplete: cost cap of $0.50 reached after 5 of 6 cases" in text
    assert "| helpfulness | 0.8000 |" in text
    model_table = text.split("### `gpt-4o-mini`: 1 of 3 passed", 1)[1].split("###", 1)[0]
    rows = [line for line in model_table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[1] for row in rows[1:]] == ["judged", "greets", "blocks-ssn"]  # failures first
    assert "output does not contain 'ada' (output: 'Hi \\| there')" in rows[2]  # a pipe cannot break the table
    assert "### `prompt:triage@staging`: 2 of 3 passed" in text
    failures = text.split("### Failures (2)", 1)[1]
    assert "- **greets** on `gpt-4o-mini`: failed\n  - ❌ `icontains`: output does not contain" in failures
    assert "  - ❌ `latency`: took 2500 ms, over 2000 ms" in failures and "is-json" not in failures
    assert "- **judged** on `gpt-4o-mini`: error\n  - 💥 llm_judge: the judge answered garbage 3 times" in failures


def test_markdown_against_a_baseline_lists_regressions_and_newly_passing() -> None:
    m = "gpt-4o-mini"
    before = result(item("a", m, "passed"), item("b", m, "failed"), item("c", m, "passed"), metrics={"q": 0.9})
    now = result(item("a", m, "failed", assertion("contains", False, "no")), item("b", m, "passed"),
                 sha="b" * 64, run_id="evr_2", metrics={"q": 0.8})  # fmt: skip
    text = to_markdown(now, compare(before, now, 0.05).as_json())
    section = text.split("### Against the baseline `evr_1`", 1)[1].split("###", 1)[0]
    assert "> The suite changed since the baseline (sha256 `aaaaaaaaaaaa` → `bbbbbbbbbbbb`)" in section
    assert "**3 regressions**, 1 newly passing, 0 new (tolerance 0.05)" in section
    assert "- 🔻 a on gpt-4o-mini: passed in the baseline, failed now" in section
    assert "- 🔻 c on gpt-4o-mini is missing from this run (passed in the baseline)" in section
    assert "- 🔻 metric q dropped from 0.9 to 0.8 (tolerance 0.05)" in section
    assert "- 🟢 b on gpt-4o-mini: failed in the baseline, passes now" in section
    assert "suite changed" not in to_markdown(now, compare(now, now).as_json())


def test_markdown_stays_bounded() -> None:
    run = result(
        *(item(f"c{i}", "gpt-4o-mini", "failed", assertion("contains", False, "x" * 5000)) for i in range(500))
    )
    text = to_markdown(run)
    assert f"| | … and {500 - MAX_ROWS} more | | | | |" in text and "- … and 450 more (see the JUnit" in text
    assert len(text) < 200_000
