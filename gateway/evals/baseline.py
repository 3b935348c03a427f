"""Baselines: a previous run's canonical result (`--baseline FILE`) compared with this run, and `--bless FILE`.

A regression is a (case, target) that passed in the baseline and failed or errored now, a metric whose mean dropped
by more than the tolerance (absolute: 0.05 is five points of a 0..1 score), or a (case, target) of the baseline this
run did not run (absent, or skipped). A (case, target) that did not pass in the baseline and passes now is newly
passing. A baseline of another suite (by name) is refused; one of the same suite with other content (sha256) is what
a baseline is for, and the comparison says the suite changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.evals.reports import FORMAT, write_json

PASSED = "passed"
NOT_RUN = "skipped"
EPSILON = 1e-9  # a mean "equal" to the baseline's up to float noise did not drop


class BaselineError(ValueError):
    """A baseline that cannot serve: unreadable, of an unknown format, or of another suite."""


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal["failed", "missing", "metric", "passing"]
    message: str  # what changed, for the reports
    case_id: str | None = None
    target: str | None = None
    metric: str | None = None
    was: str | float | None = None  # the baseline's status, or metric mean
    now: str | float | None = None


@dataclass(slots=True)
class Comparison:
    baseline_run_id: str | None
    suite_changed: bool  # same suite name, other content (suite file or dataset bytes)
    baseline_sha256: str | None
    sha256: str | None
    tolerance: float
    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)  # newly passing
    new_cases: list[tuple[str, str]] = field(default_factory=list)  # (case, target) not in the baseline

    @property
    def ok(self) -> bool:
        return not self.regressions

    def as_json(self) -> dict[str, Any]:
        return {
            "baseline_run_id": self.baseline_run_id, "suite_changed": self.suite_changed,
            "baseline_sha256": self.baseline_sha256, "sha256": self.sha256, "tolerance": self.tolerance,
            "ok": self.ok, "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "new_cases": [{"case_id": case, "target": target} for case, target in self.new_cases],
        }  # fmt: skip


def read_result(path: str | Path) -> dict[str, Any]:
    """A canonical result file (a baseline); raises BaselineError saying why it cannot be one."""
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file") from None
    except (OSError, ValueError) as exc:
        raise BaselineError(f"{path}: not a readable JSON result ({exc})") from None
    check_result(data, str(path))
    return data


def check_result(data: object, source: str = "baseline") -> None:
    """Raises BaselineError unless `data` has the shape of a canonical result of this format."""
    if not isinstance(data, dict) or "format" not in data:
        raise BaselineError(f"{source}: not an eval result (no format field); expected format {FORMAT!r}")
    if data["format"] != FORMAT:
        raise BaselineError(f"{source}: unknown result format {data['format']!r}; expected {FORMAT!r}")
    suite, results = data.get("suite"), data.get("results")
    if not isinstance(suite, dict) or not isinstance(suite.get("name"), str) or not isinstance(results, list):
        raise BaselineError(f"{source}: malformed {FORMAT} result (suite.name and results are required)")
    for i, item in enumerate(results):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("case_id", "target", "status")):
            raise BaselineError(f"{source}: malformed result results[{i}] (case_id, target and status are required)")


def compare(baseline: dict[str, Any], result: dict[str, Any], tolerance: float = 0.0) -> Comparison:
    """What changed from `baseline` to `result` (both canonical results of the same suite)."""
    if not isinstance(tolerance, int | float) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    check_result(baseline, "baseline")
    check_result(result, "this run")
    name, base_name = result["suite"]["name"], baseline["suite"]["name"]
    if name != base_name:
        raise BaselineError(
            f"the baseline is a run of suite {base_name!r}, not of {name!r}: compare runs of the same suite"
        )
    base_sha, sha = baseline["suite"].get("sha256"), result["suite"].get("sha256")
    comparison = Comparison(baseline.get("run_id"), base_sha != sha, base_sha, sha, float(tolerance))
    now = {(r["case_id"], r["target"]): r["status"] for r in result["results"]}
    was = {(r["case_id"], r["target"]): r["status"] for r in baseline["results"]}
    for (case, target), before in was.items():
        after = now.get((case, target))
        if before == NOT_RUN:
            continue
        if after is None or after == NOT_RUN:
            how = "is missing from this run" if after is None else "was skipped in this run"
            message = f"{case} on {target} {how} ({before} in the baseline)"
            comparison.regressions.append(Change("missing", message, case, target, None, before, after))
        elif before == PASSED and after != PASSED:
            message = f"{case} on {target}: passed in the baseline, {after} now"
            comparison.regressions.append(Change("failed", message, case, target, None, before, after))
        elif before != PASSED and after == PASSED:
            message = f"{case} on {target}: {before} in the baseline, passes now"
            comparison.improvements.append(Change("passing", message, case, target, None, before, after))
    comparison.new_cases = [key for key in now if key not in was]
    comparison.regressions += _metric_drops(baseline.get("metrics") or {}, result.get("metrics") or {}, tolerance)
    return comparison


def _metric_drops(before: dict[str, Any], after: dict[str, Any], tolerance: float) -> list[Change]:
    drops = []
    for metric, mean in sorted(before.items()):
        if not isinstance(mean, int | float):
            continue
        current = after.get(metric)
        if not isinstance(current, int | float):
            message = f"metric {metric} was not produced by this run ({mean:.4g} in the baseline)"
            drops.append(Change("metric", message, metric=metric, was=mean, now=None))
        elif current < mean - tolerance - EPSILON:
            message = f"metric {metric} dropped from {mean:.4g} to {current:.4g} (tolerance {tolerance:g})"
            drops.append(Change("metric", message, metric=metric, was=mean, now=current))
    return drops


def bless(result: dict[str, Any], path: str | Path) -> Path:
    """Writes `result` as the baseline at `path`; an incomplete run is refused (its missing cases would never be
    compared again)."""
    check_result(result, "this run")
    if result.get("status") == "incomplete":
        reason = result.get("incomplete_reason") or "it did not finish"
        raise BaselineError(f"not blessed as a baseline: the run is incomplete ({reason})")
    return write_json(result, path)
