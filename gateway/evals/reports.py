"""The reports of a run, all from its canonical result (the JSON of format gateway-eval-result/1):
- JSON: the canonical result itself (what `--baseline` reads and the store keeps);
- JUnit XML: one testcase per (case, target), classname "<suite>.<target>", a failure naming each failed assertion
  and its reason, an error element for an errored case, a skipped element for a skipped one;
- Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): a totals line, a table per target, the failures with their
  reasons and, given a baseline comparison (`Comparison.as_json()`), the regressions and newly passing cases.
Reports are bounded: long outputs and reasons are cut, and Markdown lists at most MAX_ROWS rows a table.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

FORMAT = "gateway-eval-result/1"
MAX_ROWS = 200  # cases a Markdown table lists (failures first); the rest are counted
MAX_FAILURES = 50  # failures the Markdown details
MAX_REASON = 300
ICONS = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️", "incomplete": "⚠️"}
ORDER = ("error", "failed", "skipped", "passed")  # in a target's table
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    return _write(path, to_json(result))


def write_reports(
    result: dict[str, Any],
    *,
    json_path: str | Path | None = None,
    junit_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    comparison: dict[str, Any] | None = None,
    append_markdown: bool = False,
) -> None:
    """Writes each report asked for. `append_markdown`: add to the Markdown file rather than replace it (a CI job
    summary such as $GITHUB_STEP_SUMMARY, or several suites' summaries in one file)."""
    if json_path:
        write_json(result, json_path)
    if junit_path:
        _write(junit_path, to_junit(result))
    if markdown_path and append_markdown:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        with open(markdown_path, "a", encoding="utf-8") as file:
            file.write(to_markdown(result, comparison))
    elif markdown_path:
        _write(markdown_path, to_markdown(result, comparison))


def _write(path: str | Path, text: str) -> Path:
    """Atomically: a reader (a CI step, a baseline) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _cut(text: str, limit: int = MAX_REASON) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _xml(text: object) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _failed_assertions(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The assertions that failed (not errored) in the item's attempts, each once by (type, reason)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for attempt in item["attempts"]:
        for assertion in attempt["assertions"]:
            if not assertion["passed"] and not assertion["error"]:
                seen.setdefault((assertion["type"], assertion["reason"]), assertion)
    return list(seen.values())


def _attempt_errors(item: dict[str, Any]) -> list[str]:
    """What errored: a call (an attempt's `error`) or an assertion, each once."""
    errors = []
    for attempt in item["attempts"]:
        if _call_error(attempt):
            errors.append(f"attempt {attempt['repeat']}: {attempt['error']}")
        errors += [f"{a['type']}: {a['error']}" for a in attempt["assertions"] if a["error"]]
    return list(dict.fromkeys(errors))


def _call_error(attempt: dict[str, Any]) -> str | None:
    """The attempt's own error when it is not one of its assertions' (the runner repeats the first of those)."""
    error = attempt.get("error")
    return error if error and error not in {a["error"] for a in attempt["assertions"]} else None


def summary(item: dict[str, Any]) -> str:
    """One line on why a (case, target) did not pass."""
    if item["status"] == "skipped":
        return str(item.get("reason") or "not run")
    parts = _attempt_errors(item) if item["status"] == "error" else []
    parts += [f"{a['type']}: {a['reason']}" for a in _failed_assertions(item)]
    if item["repeats"] > 1:
        parts.insert(0, f"pass rate {item['pass_rate']:.2f} < required {item['required_pass_rate']:.2f}")
    return "; ".join(parts) or item["status"]


def _details(item: dict[str, Any]) -> str:
    lines = []
    for attempt in item["attempts"]:
        verdict = "pass" if attempt["passed"] else "FAIL"
        lines.append(f"attempt {attempt['repeat']}: {verdict} (score {attempt['score']:.3f})")
        if _call_error(attempt):
            lines.append(f"  error: {attempt['error']}")
        for a in attempt["assertions"]:
            mark = "error" if a["error"] else ("ok" if a["passed"] else "FAILED")
            lines.append(
                f"  [{mark}] {a['type']} (score {a['score']:.3f}, weight {a['weight']:g}): {a['error'] or a['reason']}"
            )
    return "\n".join(lines)


def to_junit(result: dict[str, Any]) -> str:
    suite = result["suite"]["name"]
    counts = result["counts"]
    root = ET.Element(
        "testsuites",
        name=suite,
        tests=str(counts["total"]),
        failures=str(counts["failed"]),
        errors=str(counts["errors"]),
        skipped=str(counts["skipped"]),
        time=_seconds(result["results"]),
    )
    for target in _target_ids(result):
        items = [r for r in result["results"] if r["target"] == target]
        element = ET.SubElement(
            root,
            "testsuite",
            name=f"{suite} [{target}]",
            tests=str(len(items)),
            failures=str(sum(r["status"] == "failed" for r in items)),
            errors=str(sum(r["status"] == "error" for r in items)),
            skipped=str(sum(r["status"] == "skipped" for r in items)),
            time=_seconds(items),
            timestamp=result["started_at"],
        )
        properties = ET.SubElement(element, "properties")
        for name, value in (
            ("run_id", result["run_id"]),
            ("target", target),
            ("suite_sha256", result["suite"]["sha256"]),
            ("git_commit", result["git_commit"]),
        ):
            if value:
                ET.SubElement(properties, "property", name=name, value=_xml(value))
        for item in items:
            case = ET.SubElement(
                element,
                "testcase",
                name=_xml(item["case_id"]),
                classname=_xml(f"{suite}.{target}"),
                time=_seconds([item]),
            )
            status = item["status"]
            if status in ("failed", "error"):
                kind = "failure" if status == "failed" else "error"
                node = ET.SubElement(
                    case,
                    kind,
                    message=_xml(_cut(summary(item), 1000)),
                    type="AssertionFailed" if status == "failed" else "EvalError",
                )
                node.text = _xml(_details(item))
            elif status == "skipped":
                ET.SubElement(case, "skipped", message=_xml(summary(item)))
            outputs = [a["output"] for a in item["attempts"] if a["output"]]
            if outputs and status != "passed":
                ET.SubElement(case, "system-out").text = _xml(outputs[-1])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _seconds(items: list[dict[str, Any]]) -> str:
    total = sum(a["latency_ms"] or 0 for item in items for a in item["attempts"])
    return f"{total / 1000:.3f}"


def _target_ids(result: dict[str, Any]) -> list[str]:
    ids = [t["id"] for t in result["targets"]]
    return ids + [t for t in dict.fromkeys(r["target"] for r in result["results"]) if t not in ids]


def _md(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def to_markdown(result: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    suite, status, counts, cost = result["suite"], result["status"], result["counts"], result["cost_usd"]
    lines = [f"## {ICONS[status]} Eval suite `{suite['name']}`: {status}", ""]
    lines.append(
        f"**{counts['passed']} of {counts['total']} passed**, {counts['failed']} failed, "
        f"{_plural(counts['errors'], 'error')}, {counts['skipped']} skipped (pass rate "
        f"{100 * result['pass_rate']:.1f} %) · cost ${cost['target']:.4f} + judge "
        f"${cost['judge']:.4f} · run `{result['run_id']}` · suite `{suite['sha256'][:12]}`"
    )
    if result["incomplete_reason"]:
        lines += ["", f"> ⚠️ Incomplete: {_md(result['incomplete_reason'])}"]
    if result["metrics"]:
        lines += ["", "| metric | mean |", "|---|---:|"]
        lines += [f"| {_md(name)} | {mean:.4f} |" for name, mean in sorted(result["metrics"].items())]
    if comparison is not None:
        lines += _baseline_lines(comparison)
    for target in _target_ids(result):
        items = sorted((r for r in result["results"] if r["target"] == target), key=lambda r: ORDER.index(r["status"]))
        passed = sum(r["status"] == "passed" for r in items)
        lines += [
            "",
            f"### `{target}`: {passed} of {len(items)} passed",
            "",
            "| | case | pass rate | score | latency ms | why not passed |",
            "|---|---|---:|---:|---:|---|",
        ]
        for item in items[:MAX_ROWS]:
            attempts = item["attempts"]
            latency = sum(a["latency_ms"] or 0 for a in attempts) / len(attempts) if attempts else 0.0
            why = "" if item["status"] == "passed" else _md(_cut(summary(item), 120))
            lines.append(
                f"| {ICONS[item['status']]} | {_md(item['case_id'])} | {item['pass_rate']:.2f} "
                f"| {item['score']:.2f} | {latency:.0f} | {why} |"
            )
        if len(items) > MAX_ROWS:
            lines.append(f"| | … and {len(items) - MAX_ROWS} more | | | | |")
    failures = [r for r in result["results"] if r["status"] in ("failed", "error")]
    if failures:
        lines += ["", f"### Failures ({len(failures)})", ""]
        for item in failures[:MAX_FAILURES]:
            lines.append(f"- **{_md(item['case_id'])}** on `{item['target']}`: {item['status']}")
            for error in _attempt_errors(item):
                lines.append(f"  - 💥 {_md(_cut(error))}")
            for a in _failed_assertions(item):
                lines.append(f"  - ❌ `{a['type']}`: {_md(_cut(a['reason']))}")
        if len(failures) > MAX_FAILURES:
            lines.append(f"- … and {len(failures) - MAX_FAILURES} more (see the JUnit or JSON report)")
    return "\n".join(lines) + "\n"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _baseline_lines(comparison: dict[str, Any]) -> list[str]:
    lines = ["", f"### Against the baseline `{comparison['baseline_run_id']}`", ""]
    if comparison["suite_changed"]:
        lines.append(
            f"> The suite changed since the baseline (sha256 `{str(comparison['baseline_sha256'])[:12]}` "
            f"→ `{str(comparison['sha256'])[:12]}`): cases may have been edited."
        )
        lines.append("")
    regressions, improvements = comparison["regressions"], comparison["improvements"]
    lines.append(
        f"**{_plural(len(regressions), 'regression')}**, {len(improvements)} newly passing, "
        f"{len(comparison['new_cases'])} new (tolerance {comparison['tolerance']:g})"
    )
    lines += [f"- 🔻 {_md(change['message'])}" for change in regressions[:MAX_FAILURES]]
    lines += [f"- 🟢 {_md(change['message'])}" for change in improvements[:MAX_FAILURES]]
    return lines
