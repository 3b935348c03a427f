"""`gateway eval run` as a user runs it: suite files on disk, a config on fake models, exit codes, reports, baselines,
the stored run; and the HTTP client against the app (ASGI, in process) with decisions read from /admin/calls."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

pytest.importorskip("gateway.evals.spec")  # the suite loader (another branch until merged)

from gateway.app import create_app  # noqa: E402
from gateway.cli import main  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.evals.cache import ResponseCache  # noqa: E402
from gateway.evals.clients import HttpClient  # noqa: E402
from gateway.evals.runner import RunOptions, run_suite  # noqa: E402
from gateway.evals.spec import load_suite  # noqa: E402
from tests.conftest import AUTH, MASTER_KEY  # noqa: E402

CONFIG = """
models:
  - {{name: demo, model: fake/echo}}
  - {{name: priced, model: fake/echo, price: {{input_per_mtok: 100000, output_per_mtok: 100000}}}}
master_key: {master}
database_url: sqlite:///{folder}/gateway.db
spool_dir: {folder}/spool
policies: {folder}/policies
"""
POLICY = """
name: evals-cli
guardrails:
  - {id: no-secrets, stage: input, check: secrets, action: block, message: "No credentials."}
"""
SUITE = """\
name: {name}
targets: [{target}]
cases:
  - id: echoes
    input: "hello there"
    assert: [{{type: contains, value: there}}]
  - id: refuses-keys
    input: "my key is sk-proj-a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"
    assert: [{{type: blocked, rule: no-secrets}}]
  - id: second
    input: "{second}"
    assert: [{{type: contains, value: two}}]
"""


@pytest.fixture
def folder(tmp_path: Path, migrated_sqlite: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    shutil.copyfile(migrated_sqlite, tmp_path / "gateway.db")
    (tmp_path / "gateway.yaml").write_text(CONFIG.format(master=MASTER_KEY, folder=tmp_path))
    (tmp_path / "evals").mkdir()
    monkeypatch.chdir(tmp_path)  # the response cache lives under the working directory
    return tmp_path


def suite(folder: Path, *, name: str = "cli-suite", target: str = "demo", second: str = "one two") -> Path:
    path = folder / "evals" / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, target=target, second=second))
    return path


def run(folder: Path, *args: str) -> int:
    return main(["eval", "run", "--config", str(folder / "gateway.yaml"), "--quiet", *args])


def test_a_passing_suite_exits_0_writes_reports_and_stores_the_run(folder: Path, capsys: pytest.CaptureFixture[str]):
    suite(folder)
    assert run(folder, "evals", "--json", "out.json", "--junit", "out.xml", "--markdown", "summary.md",
               "--bless", "base.json") == 0  # fmt: skip
    result = orjson.loads((folder / "out.json").read_bytes())
    assert result["status"] == "passed" and result["counts"]["total"] == 3
    assert (folder / "out.xml").read_text().count("<testcase") == 3
    assert "cli-suite" in (folder / "summary.md").read_text()
    out = capsys.readouterr().out
    assert "cli-suite: passed (3/3 passed)" in out and f"stored as run {result['run_id']}" in out
    assert orjson.loads((folder / "base.json").read_bytes())["run_id"] == result["run_id"]
    assert (folder / ".gateway-eval-cache").is_dir()

    suite(folder, second="one three")  # the same suite, now failing a case that passed
    assert run(folder, "evals", "--baseline", "base.json", "--no-store") == 1
    out = capsys.readouterr().out
    assert "regression: second on demo: passed in the baseline, failed now" in out


def test_invalid_suites_targets_and_arguments_exit_2(folder: Path, capsys: pytest.CaptureFixture[str]):
    path = suite(folder)
    path.write_text(path.read_text().replace("type: contains", "type: containz", 1))
    assert run(folder, str(path)) == 2
    assert "evals/cli-suite.yaml: case echoes: cases[0].assert[0]" in capsys.readouterr().err
    suite(folder, target="gpt-nope")
    assert run(folder, "evals") == 2
    assert "targets[0]: no model 'gpt-nope' in the config" in capsys.readouterr().err
    suite(folder)
    assert main(["eval", "run", "evals", "--url", "http://127.0.0.1:9", "--key", "k", "--replay", "t.json"]) == 2
    assert "in process only" in capsys.readouterr().err
    assert main(["eval", "run", "evals", "--url", "http://127.0.0.1:9", "--key", "k"]) == 2  # `blocked` needs it
    assert "pass --admin-key" in capsys.readouterr().err
    assert run(folder, "evals", "--filter", "nothing-matches") == 2
    assert run(folder, "evals", "--replay", "absent.json") == 2
    assert "no such cassette" in capsys.readouterr().err


def test_the_cost_cap_exits_3_with_partial_reports(folder: Path, capsys: pytest.CaptureFixture[str]):
    suite(folder, target="priced")
    code = run(folder, "evals", "--max-cost", "0.000001", "--concurrency", "1", "--no-cache", "--json", "o.json")
    assert code == 3
    result = orjson.loads((folder / "o.json").read_bytes())
    assert result["status"] == "incomplete" and result["counts"]["skipped"] == 2
    assert "incomplete: cost cap of $0.00 reached after 1 of 3 cases" in capsys.readouterr().err


def test_an_unreachable_gateway_exits_3(folder: Path, capsys: pytest.CaptureFixture[str]):
    (folder / "evals" / "plain.yaml").write_text("name: plain\ntarget: demo\ncases: [{id: a, input: hi, assert: "
                                                 "[{type: contains, value: hi}]}]\n")  # fmt: skip
    assert main(["eval", "run", "evals/plain.yaml", "--url", "http://127.0.0.1:9", "--key", "k", "--quiet"]) == 3
    assert "cannot reach the gateway at http://127.0.0.1:9" in capsys.readouterr().err


@pytest.fixture
async def served(folder: Path) -> AsyncIterator[httpx.ASGITransport]:
    config = parse_config(
        {"models": [{"name": "demo", "model": "fake/echo"}], "master_key": MASTER_KEY,
         "database_url": f"sqlite:///{folder}/gateway.db", "spool_dir": str(folder / "spool"),
         "policies": str(folder / "policies")}, source="test", env={},
    )  # fmt: skip
    app = create_app(config, freeze_gc=False)
    async with app.router.lifespan_context(app):
        yield httpx.ASGITransport(app=app)


async def test_over_http_decisions_come_from_the_calls_record(folder: Path, served: httpx.ASGITransport):
    async with httpx.AsyncClient(transport=served, base_url="http://gateway") as admin:
        created = await admin.post("/admin/keys", json={"name": "ci"}, headers=AUTH)
    key = created.json()["key"]
    path = suite(folder)
    (folder / "evals" / "cli-suite.yaml").write_text(path.read_text().replace("  - id: second", "  - id: streamed\n"
        "    input: \"one two\"\n    request: {stream: true}\n    assert: [{type: contains, value: \"one two\"}]\n"
        "  - id: second"))  # fmt: skip
    loaded = load_suite(path)
    async with HttpClient("http://gateway", key, MASTER_KEY, transport=served) as client:
        client.needs_record = True
        await client.check_targets(loaded.targets)
        assert client.scope.startswith("url:http://gateway|policies:")
        result = await run_suite(loaded, client, ResponseCache(enabled=False), RunOptions())
    assert result["status"] == "passed", result
    assert result["counts"]["total"] == 4
    blocked = next(r for r in result["results"] if r["case_id"] == "refuses-keys")
    assert blocked["attempts"][0]["assertions"][0]["passed"]
