"""`gateway eval runs list|show|compare`: the comparison's table of changes and exit codes (on result files), and the
commands against a served gateway."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.evals.runs_cli import add_runs_parser, compare_runs
from tests.conftest import AUTH, MASTER_KEY, MakeConfig
from tests.evals.run_results import make_result, run_id


def runs(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway eval")
    add_runs_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["runs", *argv])
    return int(args.handler(args))


def result(statuses: list[str], **extra: object) -> dict[str, object]:
    return make_result(rid=run_id(), prompt=None, statuses={"gpt-test": statuses}, **extra)


@pytest.mark.parametrize(
    ("a", "b", "changes", "regressed"),
    [
        (["passed", "passed"], ["passed", "passed"], ["", ""], 0),
        (["passed", "failed"], ["failed", "passed"], ["pass->fail (regression)", "fail->pass (fixed)"], 1),
        (["passed", "error"], ["error", "error"], ["pass->fail (regression)", ""], 1),
        (["passed", "passed"], ["passed"], ["", "missing (regression)"], 1),
        (["failed"], ["failed", "passed"], ["", "new"], 0),
        (["skipped"], ["passed"], ["skipped->pass (fixed)"], 0),
    ],
)
def test_compare_names_each_change_and_counts_regressions(
    a: list[str], b: list[str], changes: list[str], regressed: int
) -> None:
    rows, count = compare_runs(result(a), result(b))
    assert [row["change"] for row in rows] == changes and count == regressed


def test_compare_of_result_files_exits_1_on_a_regression_and_2_across_suites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {}
    for name, data in {
        "a": result(["passed"]),
        "b": result(["failed"]),
        "c": result(["passed"], suite="other"),
    }.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(data))
    assert runs("compare", str(files["a"]), str(files["a"])) == 0
    assert runs("compare", str(files["a"]), str(files["b"])) == 1
    out = capsys.readouterr().out
    assert "case-0   gpt-test  pass  fail  pass->fail (regression)" in out and "1 regressed, 0 fixed, 0 new" in out
    assert runs("compare", str(files["a"]), str(files["c"])) == 2
    assert "different suites" in capsys.readouterr().out


@pytest.fixture
def served(make_config: MakeConfig) -> Iterator[str]:
    """The app on a real port, served from a thread (the CLI's urllib blocks): 0.2 s, against 5 s for a subprocess."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(make_config(), freeze_gc=False), port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_list_show_and_compare_stored_runs(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = result(["passed", "passed"]), result(["passed", "failed"])
    for data in (old, new):
        assert httpx.post(f"{served}/admin/evals/runs", headers=AUTH, json=data).status_code == 201
    flags = ("--url", served, "--key", MASTER_KEY)
    assert runs("list", "--limit", "1", *flags) == 0
    out = capsys.readouterr().out
    assert f"{new['run_id']}  triage  failed  gpt-test=failed" in out and f"(more: --before {new['run_id']})" in out
    assert runs("show", str(old["run_id"]), *flags) == 0
    out = capsys.readouterr().out
    assert "pass rate 100.00%: 2 passed, 0 failed" in out and "case-1   gpt-test  passed" in out
    assert runs("compare", str(old["run_id"]), str(new["run_id"]), *flags) == 1
    assert "case-1   gpt-test  pass  fail  pass->fail (regression)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="404: No eval run 'evr_nope"):
        runs("show", "evr_nope", *flags)
