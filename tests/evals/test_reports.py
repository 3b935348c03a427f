"""The reports a CI job reads: JSON (the canonical result), JUnit XML, and the Markdown job summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway.evals.baseline import compare
from gateway.evals.reports import to_junit, to_markdown, write_json, write_reports
from tests.evals.results import assertion, item, result, sample


def test_the_json_report_is_the_canonical_result(tmp_path: Path) -> None:
    run = sample()
    assert write_json(run, str(tmp_path / "out" / "deep" / "r.json")) == tmp_path / "out" / "deep" / "r.json"
    write_reports(run, json_path=tmp_path / "out/result.json")
    assert json.loads((tmp_path / "out/result.json").read_text()) == run
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deep", "result.json"]  # no temporary file left


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
    assert {p.tag for p in suites[1].find("properties") or []} == {"property"}
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
    run = result(item("flaky", "gpt-4o-mini", "failed", assertion("contains", False, "no 'x'"), repeats=2))
    run["results"][0].update(pass_rate=0.5, required_pass_rate=0.66)
    failure = ET.fromstring(to_junit(run)).find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == "pass rate 0.50 < required 0.66; contains: no 'x'"
    assert failure.text.count("attempt") == 2


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
    assert (
        "\n**3 of 6 passed**, 1 failed, 1 error, 1 skipped (pass rate 50.0 %) · cost $0.0123 + judge $0.0004 · run "
        "`evr_1` · suite `aaaaaaaaaaaa`\n" in text
    )
    assert "> ⚠️ Incomplete: cost cap of $0.50 reached after 5 of 6 cases" in text
    assert "\n\n| metric | mean |\n|---|---:|\n| helpfulness | 0.8000 |\n" in text
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
    assert "cases may have been edited.\n\n**3 regressions**, 1 newly passing, 0 new (tolerance 0.05)\n" in section
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
    assert "| | … and 300 more | | | | |" in text and "- … and 450 more (see the JUnit" in text
    assert len(text) < 200_000


def test_the_json_file_is_indented_utf8_and_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    run = result(item("café", "gpt-4o-mini", "passed", output="naïve"))
    write_reports(run, json_path=tmp_path / "r.json", junit_path=tmp_path / "r.xml")
    text = (tmp_path / "r.json").read_text(encoding="utf-8")
    assert text == json.dumps(run, indent=2, ensure_ascii=False) + "\n" and '"naïve"' in text
    assert (tmp_path / "r.xml").read_text() == to_junit(run)
    write_reports(run, markdown_path=tmp_path / "new" / "dir" / "s.md", append_markdown=True)
    assert (tmp_path / "new" / "dir" / "s.md").read_text() == to_markdown(run)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(OSError):
        write_reports(run, json_path=tmp_path / "taken")  # a folder is in the way
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "r.json", "r.xml", "taken"]


def test_junit_details_and_bounds() -> None:
    m = "gpt-4o-mini"
    flaky = item("flaky", m, "failed", assertion("contains", False, "no 'x'"), assertion("regex", False, "no digit"),
                 repeats=3, output="first")  # fmt: skip
    flaky["attempts"][1]["output"] = "second"
    flaky["attempts"][2] = {**flaky["attempts"][2], "passed": True, "score": 1.0, "output": "", "assertions": []}
    flaky.update(pass_rate=1 / 3, required_pass_rate=0.5)
    broken = item("broken", m, "error", assertion("contains", True, "has 'x'"),
                  assertion("llm_judge", False, "", error="garbage verdict"), latency=1500.0)  # fmt: skip
    broken["attempts"][0]["error"] = "upstream timed out"
    unreachable = item("unreachable", m, "error", assertion("contains", False, "", error="no answer"))
    unreachable["attempts"][0]["latency_ms"] = None  # the call never happened: no latency
    unreachable["attempts"][0]["error"] = "no answer"  # the runner repeats an assertion's error on its attempt
    long = item("long", "other-target", "failed", assertion("regex", False, "r" * 2000))
    run = result(flaky, broken, long, unreachable)
    text = to_junit(run)
    assert "\n  <testsuite " in text and "\n    <testcase " in text  # indented for people reading it
    root = ET.fromstring(text)
    assert root.get("time") == "1.548" and [s.get("name") for s in root.findall("testsuite")] == [
        "shipped-policies [gpt-4o-mini]", "shipped-policies [prompt:triage@staging]",
        "shipped-policies [other-target]"]  # fmt: skip
    assert root.find("testsuite").get("timestamp") == "2026-12-07T23:00:00Z"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["flaky"].find("system-out").text == "second"
    assert cases["flaky"].find("failure").get("message") == (
        "pass rate 0.33 < required 0.50; contains: no 'x'; regex: no digit"
    )  # each failed assertion once
    assert cases["flaky"].find("failure").text == (
        "attempt 0: FAIL (score 0.000)\n  [FAILED] contains (score 0.000, weight 1): no 'x'\n"
        "  [FAILED] regex (score 0.000, weight 1): no digit\n"
        "attempt 1: FAIL (score 0.000)\n  [FAILED] contains (score 0.000, weight 1): no 'x'\n"
        "  [FAILED] regex (score 0.000, weight 1): no digit\n"
        "attempt 2: pass (score 1.000)")  # fmt: skip
    error = cases["broken"].find("error")
    assert (error.get("type"), error.get("message"), cases["broken"].get("time")) == (
        "EvalError",
        "attempt 0: upstream timed out; llm_judge: garbage verdict",
        "1.500",
    )
    assert error.text == (
        "attempt 0: FAIL (score 0.000)\n  error: upstream timed out\n"
        "  [ok] contains (score 1.000, weight 1): has 'x'\n  [error] llm_judge (score 0.000, weight 1): garbage verdict"
    )
    message = cases["long"].find("failure").get("message")
    assert len(message) == 1000 and message.endswith("r…") and message.startswith("regex: rrr")
    assert cases["long"].get("classname") == "shipped-policies.other-target"
    assert cases["unreachable"].find("error").get("message") == "contains: no answer"
    assert "  error:" not in cases["unreachable"].find("error").text
    assert cases["unreachable"].get("time") == "0.000" and "| 💥 | unreachable | 0.00 | 0.00 | 0 |" in to_markdown(run)


def test_markdown_orders_escapes_and_cuts() -> None:
    m = "gpt-4o-mini"
    run = result(
        item("p", m, "passed", latency=10.0, repeats=2), item("s", m, "skipped"),
        item("f", m, "failed", assertion("contains", False, "x" * 300), assertion("regex", False, "y" * 301)),
        item("n", m, "failed", assertion("contains", False, "two\nlines")),
        item("t", m, "failed", assertion("contains", True, "ok", score=1.0)),
        item("e\\<|", m, "error", assertion("contains", False, "", error="boom")),
    )  # fmt: skip
    run["results"][1]["reason"] = "cost cap reached"
    run["results"][4].update(pass_rate=0.0, score=0.6)
    text = to_markdown(run)
    table = text.split("### `gpt-4o-mini`: 1 of 6 passed", 1)[1].split("###", 1)[0].strip().splitlines()
    assert table[:2] == ["| | case | pass rate | score | latency ms | why not passed |", "|---|---|---:|---:|---:|---|"]
    rows = table[2:]
    assert rows[0] == "| 💥 | e\\\\&lt;\\| | 0.00 | 0.00 | 12 | contains: boom |"
    assert rows[2:] == [
        "| ❌ | n | 0.00 | 0.00 | 12 | contains: two lines |",
        "| ❌ | t | 0.00 | 0.60 | 12 | failed |",  # below the case's threshold, though no assertion failed
        "| ⏭️ | s | 0.00 | 0.00 | 0 | cost cap reached |",
        "| ✅ | p | 1.00 | 1.00 | 10 |  |",
    ]
    assert rows[1].startswith("| ❌ | f | 0.00 | 0.00 | 12 | contains: " + "x" * 109 + "…")
    assert f"  - ❌ `contains`: {'x' * 300}\n  - ❌ `regex`: {'y' * 299}…\n" in text
    assert "- **e\\\\&lt;\\|** on `gpt-4o-mini`: error\n  - 💥 contains: boom\n" in text
    many = result(*(item(f"c{i}", m, "failed", assertion("contains", False, "no")) for i in range(201)))
    text = to_markdown(many)
    assert "| ❌ | c199 |" in text and "| ❌ | c200 |" not in text and "| | … and 1 more | | | | |" in text
    assert "- **c49** on" in text and "- **c50** on" not in text and "- … and 151 more (see the JUnit" in text
    fifty = to_markdown(result(*(item(f"c{i}", m, "failed", assertion("contains", False, "no")) for i in range(50))))
    assert "- **c49** on" in fifty and "more (see the JUnit" not in fifty
    full = to_markdown(result(*(item(f"c{i}", m, "passed") for i in range(200))))
    assert "| ✅ | c199 |" in full and "… and" not in full
