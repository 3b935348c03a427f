"""Baselines: what counts as a regression against a previous run, what as newly passing, and which baselines are
refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.evals.baseline import BaselineError, Change, bless, check_result, compare, read_result
from tests.evals.results import assertion, item, result

M, P = "gpt-4o-mini", "prompt:triage@staging"
NO = assertion("contains", False, "no")
BAD_ITEM = "baseline: malformed result results[0]"


def statuses(**by_case: str) -> dict[str, object]:
    return result(*(item(case, M, status, *([NO] if status != "passed" else [])) for case, status in by_case.items()))


def test_the_same_run_has_no_changes() -> None:
    run = statuses(a="passed", b="failed", c="error", d="skipped")
    comparison = compare(run, run)
    assert comparison.ok and (comparison.regressions, comparison.improvements, comparison.new_cases) == ([], [], [])
    assert not comparison.suite_changed and comparison.tolerance == 0.0
    assert comparison.as_json() == {
        "baseline_run_id": "evr_1", "suite_changed": False, "baseline_sha256": "a" * 64, "sha256": "a" * 64,
        "tolerance": 0.0, "ok": True, "regressions": [], "improvements": [], "new_cases": [],
    }  # fmt: skip


def test_status_changes() -> None:
    before = statuses(a="passed", b="passed", c="failed", d="error", e="failed", f="error", g="failed", h="passed")
    after = statuses(a="failed", b="error", c="passed", d="passed", e="error", f="failed", g="failed", h="passed")
    comparison = compare(before, after)
    assert not comparison.ok
    assert comparison.regressions == [
        Change("failed", "a on gpt-4o-mini: passed in the baseline, failed now", "a", M, None, "passed", "failed"),
        Change("failed", "b on gpt-4o-mini: passed in the baseline, error now", "b", M, None, "passed", "error"),
    ]
    assert comparison.improvements == [
        Change("passing", "c on gpt-4o-mini: failed in the baseline, passes now", "c", M, None, "failed", "passed"),
        Change("passing", "d on gpt-4o-mini: error in the baseline, passes now", "d", M, None, "error", "passed"),
    ]
    assert comparison.as_json()["regressions"][0] == {
        "kind": "failed", "message": "a on gpt-4o-mini: passed in the baseline, failed now", "case_id": "a",
        "target": M, "metric": None, "was": "passed", "now": "failed",
    }  # fmt: skip
    assert comparison.as_json()["ok"] is False


def test_missing_and_new_cases() -> None:
    before = statuses(a="passed", b="failed", c="passed", d="skipped", e="skipped")
    after = result(item("c", M, "skipped"), item("e", M, "passed"), item("new", M, "passed"), item("a", P, "passed"))
    comparison = compare(before, after)
    assert comparison.regressions == [
        Change("missing", "a on gpt-4o-mini is missing from this run (passed in the baseline)", "a", M, None, "passed"),
        Change("missing", "b on gpt-4o-mini is missing from this run (failed in the baseline)", "b", M, None, "failed"),
        Change("missing", "c on gpt-4o-mini was skipped in this run (passed in the baseline)", "c", M, None, "passed",
               "skipped"),
    ]  # fmt: skip
    assert comparison.improvements == []  # a case skipped in the baseline was not failing there
    assert comparison.new_cases == [("new", M), ("a", P)]  # the same case on another target is another unit
    assert comparison.as_json()["new_cases"] == [{"case_id": "new", "target": M}, {"case_id": "a", "target": P}]


@pytest.mark.parametrize(
    ("before", "after", "tolerance", "messages"),
    [
        ({"q": 0.9}, {"q": 0.9}, 0.0, []),
        ({"q": 0.9}, {"q": 0.95}, 0.0, []),
        ({"q": 0.9}, {"q": 0.89}, 0.0, ["metric q dropped from 0.9 to 0.89 (tolerance 0)"]),
        ({"q": 0.9}, {"q": 0.85}, 0.05, []),  # exactly the tolerance: not a drop past it
        ({"q": 0.9}, {"q": 0.849}, 0.05, ["metric q dropped from 0.9 to 0.849 (tolerance 0.05)"]),
        ({"q": 1}, {"q": 0}, 1, []),
        ({"q": 1}, {"q": 1 - 1e-9}, 0.0, []),  # float noise is not a drop
        ({"q": 0.9, "r": 0.5}, {}, 0.5, ["metric q was not produced by this run (0.9 in the baseline)",
                                         "metric r was not produced by this run (0.5 in the baseline)"]),
        ({"q": 0.9}, {"q": None}, 0.5, ["metric q was not produced by this run (0.9 in the baseline)"]),
        ({"q": "n/a"}, {}, 0.0, []),  # not a mean: nothing to compare
        ({}, {"new": 0.1}, 0.0, []),
    ],
)  # fmt: skip
def test_metric_means(
    before: dict[str, object], after: dict[str, object], tolerance: float, messages: list[str]
) -> None:
    comparison = compare(result(metrics=before), result(metrics=after), tolerance)  # type: ignore[arg-type]
    assert [c.message for c in comparison.regressions] == messages
    assert all(c.kind == "metric" and c.case_id is None for c in comparison.regressions)
    assert comparison.ok is not messages
    if messages:
        first = comparison.regressions[0]
        assert (first.metric, first.was, first.now) == (sorted(before)[0], before[sorted(before)[0]],
                                                         after.get(sorted(before)[0]))  # fmt: skip


def test_a_baseline_with_no_metrics_field() -> None:
    before, after = result(), result(metrics={"q": 0.1})
    del before["metrics"]
    assert compare(before, after).ok and compare(after, {**after, "metrics": None}).regressions[0].kind == "metric"


@pytest.mark.parametrize("tolerance", [-0.01, float("nan"), float("inf"), "0.1", None])
def test_a_tolerance_is_a_number_from_zero(tolerance: object) -> None:
    with pytest.raises(ValueError, match=f"tolerance must be a number >= 0, got {tolerance!r}"):
        compare(result(), result(), tolerance)  # type: ignore[arg-type]


def test_a_changed_suite_is_compared_and_said_so() -> None:
    comparison = compare(statuses(a="passed"), {**statuses(a="passed"), "suite": {"name": "shipped-policies",
                                                                                  "sha256": "b" * 64}})  # fmt: skip
    assert comparison.ok and comparison.suite_changed
    assert (comparison.baseline_sha256, comparison.sha256) == ("a" * 64, "b" * 64)


def test_a_baseline_of_another_suite_is_refused() -> None:
    with pytest.raises(BaselineError) as caught:
        compare(result(name="other"), result())
    assert str(caught.value) == (
        "the baseline is a run of suite 'other', not of 'shipped-policies': compare runs of the same suite"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "baseline: not an eval result (no format field); expected format 'gateway-eval-result/1'"),
        ({"results": []}, "baseline: not an eval result (no format field)"),
        ({**result(), "format": "promptfoo/3"}, "baseline: unknown result format 'promptfoo/3'; expected "
                                                "'gateway-eval-result/1'"),
        ({**result(), "suite": "x"}, "baseline: malformed gateway-eval-result/1 result (suite.name and results are"),
        ({**result(), "suite": {"name": 3}}, "baseline: malformed gateway-eval-result/1 result"),
        ({**result(), "results": {}}, "baseline: malformed gateway-eval-result/1 result"),
        ({**result(), "results": [3]}, f"{BAD_ITEM} (case_id, target and status are required)"),
        ({**result(), "results": [{"case_id": "a", "target": "m"}]}, BAD_ITEM),
        ({**result(), "results": [{"case_id": "a", "target": 1, "status": "passed"}]}, BAD_ITEM),
        ({**result(), "results": [{"case_id": 1, "target": "m", "status": "passed"}]}, BAD_ITEM),
    ],
)  # fmt: skip
def test_a_baseline_of_an_unknown_shape_is_refused(data: object, message: str) -> None:
    with pytest.raises(BaselineError) as caught:
        compare(data, result())  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    with pytest.raises(BaselineError, match="^this run: "):
        compare(result(), data)  # type: ignore[arg-type]


def test_check_result_accepts_a_valid_one() -> None:
    check_result(result(item("a", M, "passed")))


def test_bless_writes_a_baseline_read_result_reads(tmp_path: Path) -> None:
    run = statuses(a="passed", b="failed")
    path = bless(run, tmp_path / "ci" / "baseline.json")
    assert path == tmp_path / "ci" / "baseline.json"
    assert read_result(path) == run and json.loads(path.read_text()) == run
    assert compare(read_result(path), run).ok


def test_an_incomplete_run_is_not_blessed(tmp_path: Path) -> None:
    run = statuses(a="passed")
    run.update(status="incomplete", incomplete_reason="cost cap of $0.50 reached after 12 of 40 cases")
    with pytest.raises(BaselineError) as caught:
        bless(run, tmp_path / "b.json")
    assert str(caught.value) == (
        "not blessed as a baseline: the run is incomplete (cost cap of $0.50 reached after 12 of 40 cases)"
    )
    run["incomplete_reason"] = None
    with pytest.raises(BaselineError, match=r"the run is incomplete \(it did not finish\)$"):
        bless(run, tmp_path / "b.json")
    with pytest.raises(BaselineError, match="^this run: not an eval result"):
        bless({}, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


def test_read_result_says_why_a_file_is_not_a_baseline(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"nope.json: no such baseline file$"):
        read_result(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BaselineError, match=r"bad.json: not a readable JSON result \(.*line 1 column 2.*\)$"):
        read_result(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "x"}')
    with pytest.raises(BaselineError, match=r"other.json: unknown result format 'x'"):
        read_result(tmp_path / "other.json")
