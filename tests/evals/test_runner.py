"""The runner in process: the real pipeline on fake models, what the result says, the eval key, repeats, the cost cap,
the response cache and cassettes. Suites are built in code (tests/evals/runner_fakes.py)."""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from sqlmodel import select

from gateway.config import GatewayConfig, parse_config
from gateway.evals.cache import ResponseCache
from gateway.evals.cassette import Cassette, CassetteError
from gateway.evals.clients import InProcessClient, UnknownTarget
from gateway.evals.progress import Progress
from gateway.evals.runner import RunOptions, build_request, run_suite
from gateway.storage.tables import ApiKey, UsageRecord
from tests.conftest import MASTER_KEY
from tests.evals.runner_fakes import Case, Check, Suite, Target, evaluate
from tests.fake_upstream import FakeUpstream

POLICY = """
name: evals-test
guardrails:
  - {id: no-secrets, stage: input, check: secrets, action: block, message: "No credentials."}
"""
MODELS = [
    {"name": "demo", "model": "fake/echo"},
    {"name": "tools", "model": "fake/tool_call:lookup"},
    {"name": "broken", "model": "fake/error:500", "max_retries": 0},
    {"name": "priced", "model": "fake/echo", "price": {"input_per_mtok": 100_000, "output_per_mtok": 100_000}},
]
SECRET = "my key is sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> GatewayConfig:
    return eval_config(tmp_path_factory.mktemp("evals"), migrated_sqlite)


def eval_config(folder: Path, migrated_sqlite: Path, models: list[dict[str, object]] = MODELS) -> GatewayConfig:
    """Fake models (one priced, one failing), a policy blocking credentials, a database of its own."""
    (folder / "policies").mkdir()
    (folder / "policies" / "test.yaml").write_text(POLICY)
    shutil.copyfile(migrated_sqlite, folder / "gateway.db")
    data = {
        "models": models,
        "master_key": MASTER_KEY,
        "database_url": f"sqlite:///{folder / 'gateway.db'}",
        "spool_dir": str(folder / "spool"),
        "retry_backoff_s": 0.001,
        "policies": str(folder / "policies"),
    }
    return parse_config(data, source="test", env={})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(config: GatewayConfig) -> AsyncIterator[InProcessClient]:
    """One in-process gateway for the tests that do not need their own (services take ~0.2 s to open)."""
    async with InProcessClient(config) as client:
        yield client


async def run(
    client: InProcessClient | GatewayConfig,
    suite: Suite,
    tmp_path: Path,
    *,
    cache: ResponseCache | None = None,
    cassette: Cassette | None = None,
    **options: object,
) -> dict:
    cache = cache or ResponseCache(tmp_path / "cache", enabled=False)
    if isinstance(client, InProcessClient):
        return await run_suite(suite, client, cache, RunOptions(**options), evaluate)  # type: ignore[arg-type]
    async with InProcessClient(client, cassette=cassette) as fresh:
        return await run_suite(suite, fresh, cache, RunOptions(**options), evaluate)  # type: ignore[arg-type]


async def test_a_run_reports_each_case_and_target_through_the_real_pipeline(shared: InProcessClient, tmp_path: Path):
    suite = Suite(
        cases=[
            Case("echoes", "hello there", [Check("contains", "there", metric="echo")]),
            Case("misses", "hello", [Check("contains", "absent", metric="echo")]),
            Case("streams", "one two three", [Check("contains", "one two three")], request={"stream": True}),
            Case("blocked", SECRET, [Check("blocked")]),
        ],
        targets=[Target("demo"), Target("priced")],
    )
    result = await run(shared, suite, tmp_path, concurrency=3)
    assert result["format"] == "gateway-eval-result/1" and result["run_id"].startswith("evr_")
    assert result["status"] == "failed" and result["incomplete_reason"] is None
    assert result["counts"] == {"total": 8, "passed": 6, "failed": 2, "errors": 0, "skipped": 0}
    assert result["pass_rate"] == 0.75
    assert result["metrics"] == {"echo": 0.5}
    assert [t["id"] for t in result["targets"]] == ["demo", "priced"]
    by_id = {(r["case_id"], r["target"]): r for r in result["results"]}
    streamed = by_id[("streams", "demo")]["attempts"][0]
    assert streamed["output"] == "one two three" and streamed["passed"]
    blocked = by_id[("blocked", "demo")]["attempts"][0]
    assert blocked["passed"] and blocked["output"].startswith("error 403: No credentials.")
    assert by_id[("misses", "demo")]["status"] == "failed"
    assert by_id[("misses", "demo")]["attempts"][0]["assertions"][0]["reason"] == "looked for 'absent'"
    assert result["cost_usd"]["target"] > 0  # the priced model's calls, as the gateway priced them
    assert by_id[("echoes", "demo")]["attempts"][0]["request_id"].startswith("req_")


async def test_the_run_has_its_own_key_revoked_at_the_end_and_records_its_calls(config: GatewayConfig, tmp_path: Path):
    result = await run(config, Suite([Case("one", "hi", [Check("contains", "hi")])]), tmp_path)
    async with InProcessClient(config) as client:  # a new process's view: records shipped, keys stored
        assert client.services is not None
        async with client.services.db.session() as session:
            keys = (await session.exec(select(ApiKey).where(ApiKey.name == f"eval-{result['run_id']}"))).all()
            request_id = result["results"][0]["attempts"][0]["request_id"]
            record = (await session.exec(select(UsageRecord).where(UsageRecord.request_id == request_id))).one()
    assert len(keys) == 1 and keys[0].revoked_at is not None
    assert record.key_id == keys[0].id
    if hasattr(record, "eval_run_id"):  # the store helper's column
        assert record.eval_run_id == result["run_id"]


async def test_streamed_tool_calls_are_joined(shared: InProcessClient, tmp_path: Path):
    suite = Suite([Case("tool", '{"q": "x"}', [Check("contains", "")], request={"stream": True})], [Target("tools")])
    result = await run(shared, suite, tmp_path)
    assert result["results"][0]["attempts"][0]["output"] == "tool calls: lookup({'q': 'x'})"


async def test_repeats_pass_rates_thresholds_and_errors(shared: InProcessClient, tmp_path: Path):
    suite = Suite(
        [
            # weighted: 3 of 4 weight passes = 0.75 >= 0.7
            Case("weighted", "abc", [Check("contains", "abc", weight=3), Check("contains", "zzz")], threshold=0.7),
            Case("strict", "abc", [Check("contains", "abc", weight=3), Check("contains", "zzz")]),
            Case("raises", "abc", [Check("boom")], repeat=2),
            Case("upstream-down", "abc", [Check("contains", "abc")]),
        ],
        targets=[Target("demo")],
    )
    suite.cases[3].request = {"model": "broken"}  # the case's request fields come last, as in the contract
    result = await run(shared, suite, tmp_path, repeat=3)
    by_id = {r["case_id"]: r for r in result["results"]}
    assert by_id["weighted"]["status"] == "passed" and by_id["weighted"]["repeats"] == 3
    assert by_id["weighted"]["score"] == 0.75
    assert by_id["strict"]["status"] == "failed" and by_id["strict"]["pass_rate"] == 0.0
    raised = by_id["raises"]
    assert raised["status"] == "error" and raised["repeats"] == 3  # --repeat wins over the case's own
    assert raised["attempts"][0]["assertions"][0]["error"] == "RuntimeError: this assertion always raises"
    down = by_id["upstream-down"]
    assert down["status"] == "error" and "the call failed (502 provider_error)" in down["attempts"][0]["error"]
    assert result["counts"] == {"total": 4, "passed": 1, "failed": 1, "errors": 2, "skipped": 0}


async def test_a_pass_rate_below_one_tolerates_failing_repeats(shared: InProcessClient, tmp_path: Path):
    case = Case("flaky", "abc", [Check("contains", "abc")], repeat=3, pass_rate=0.6)
    result = await run(shared, Suite([case]), tmp_path)
    assert result["results"][0]["status"] == "passed" and result["results"][0]["required_pass_rate"] == 0.6


async def test_the_cost_cap_stops_the_run_and_marks_the_rest_skipped(shared: InProcessClient, tmp_path: Path):
    cases = [Case(f"c{i}", "some words to pay for", [Check("contains", "words")]) for i in range(6)]
    result = await run(shared, Suite(cases, [Target("priced")]), tmp_path, concurrency=1, max_cost=0.000001)
    assert result["status"] == "incomplete"
    assert result["incomplete_reason"] == "cost cap of $0.00 reached after 1 of 6 cases"
    assert result["counts"]["passed"] == 1 and result["counts"]["skipped"] == 5
    assert [r["status"] for r in result["results"]] == ["passed"] + ["skipped"] * 5


async def test_the_judge_cost_counts_apart_and_against_the_cap(shared: InProcessClient, tmp_path: Path):
    suite = Suite([Case(f"judged{i}", "grade me", [Check("judge", "priced")]) for i in range(3)], [Target("demo")])
    result = await run(shared, suite, tmp_path, concurrency=1, max_cost=0.000001)
    assert result["results"][0]["attempts"][0]["assertions"][0]["reason"] == "grade me"  # the judge's answer
    assert result["cost_usd"]["target"] == 0.0 and result["cost_usd"]["judge"] > 0
    assert result["status"] == "incomplete" and result["counts"]["skipped"] >= 1  # judges run after their call


async def test_filter_by_glob_or_substring(shared: InProcessClient, tmp_path: Path):
    suite = Suite([Case("pii-email"), Case("pii-phone"), Case("tools-refund")])
    result = await run(shared, suite, tmp_path, filter="pii-*")
    assert [r["case_id"] for r in result["results"]] == ["pii-email", "pii-phone"]
    result = await run(shared, suite, tmp_path, filter="refund")
    assert [r["case_id"] for r in result["results"]] == ["tools-refund"]


async def test_the_cache_answers_a_second_run_and_keeps_repeats_apart(shared: InProcessClient, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    suite = Suite(
        [Case("cached", "hello", [Check("contains", "hello")], repeat=2), Case("blocked", SECRET, [Check("blocked")])]
    )
    first = await run(shared, suite, tmp_path, cache=ResponseCache(cache_dir))
    second = await run(shared, suite, tmp_path, cache=ResponseCache(cache_dir))
    attempts = [a for r in second["results"] for a in r["attempts"]]
    assert [a["cached"] for a in attempts] == [True, True, True]
    first_ids = [a["request_id"] for r in first["results"] for a in r["attempts"]]
    assert [a["request_id"] for a in attempts] == first_ids  # two repeats, two cached answers
    assert len(set(first_ids)) == 3
    assert second["results"][1]["status"] == "passed"  # the decisions came back from the cache too
    uncached = await run(shared, suite, tmp_path, cache=ResponseCache(cache_dir, enabled=False))
    assert not any(a["cached"] for r in uncached["results"] for a in r["attempts"])


async def test_an_unknown_target_is_refused_with_its_field(shared: InProcessClient):
    with pytest.raises(UnknownTarget) as caught:
        await shared.check_targets([Target("demo"), Target("gpt-5")])
    assert caught.value.field == "targets[1]" and "no model 'gpt-5'" in caught.value.message
    with pytest.raises(UnknownTarget) as caught:
        await shared.check_targets([Target("prompt:triage", kind="prompt", prompt_id="triage", label="latest")])
    assert caught.value.field == "targets[0]" and "No prompt 'triage'" in caught.value.message


async def test_requests_follow_the_contract():
    case = Case("c", "hi", request={"temperature": 0}, vars={"name": "Ada"})
    assert build_request(case, Target("demo")) == {
        "model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": 0,
    }  # fmt: skip
    prompt = Target("prompt:triage@staging", kind="prompt", prompt_id="triage", label="staging")
    assert build_request(Case("c", None, vars={"name": "Ada"}), prompt) == {
        "model": "prompt:triage@staging", "prompt": {"variables": {"name": "Ada"}}, "messages": [],
    }  # fmt: skip
    latest = Target("prompt:triage", kind="prompt", prompt_id="triage", label="latest")
    assert build_request(Case("c", None), latest)["model"] == "prompt:triage"
    # request.model serves the prompt: the extension field's form, with the pin as a label or a version
    served = Case("c", None, request={"model": "demo"}, vars={"name": "Ada"})
    assert build_request(served, prompt) == {
        "prompt": {"id": "triage", "label": "staging", "variables": {"name": "Ada"}}, "messages": [], "model": "demo",
    }  # fmt: skip
    pinned = Target("prompt:triage@3", kind="prompt", prompt_id="triage", version=3)
    assert build_request(served, pinned)["prompt"] == {"id": "triage", "version": 3, "variables": {"name": "Ada"}}


async def test_a_replay_needs_no_upstream_and_the_gateway_still_governs(
    tmp_path: Path, migrated_sqlite: Path, upstream: FakeUpstream
):
    """Recorded against a real (fake) OpenAI-compatible upstream, replayed with its address pointing nowhere."""

    def config_for(api_base: str, name: str) -> GatewayConfig:
        folder = tmp_path / name
        folder.mkdir()
        models = [{"name": "gpt-test", "model": "openai/gpt-4o-mini", "api_base": api_base, "api_key": "sk-up",
                   "max_retries": 0}]  # fmt: skip
        return eval_config(folder, migrated_sqlite, models=models)

    suite = Suite(
        [
            Case("answers", "hi", [Check("contains", "")]),
            Case("blocked", SECRET, [Check("blocked")]),
            Case("streams", "hi", [Check("contains", "")], request={"stream": True}),
        ],
        [Target("gpt-test")],
    )
    tape = tmp_path / "tape.json"
    recorder = Cassette(tape, "record")
    recorded = await run(config_for(upstream.base_url, "recording"), suite, tmp_path, cassette=recorder)
    recorder.save()
    assert recorded["status"] == "passed" and len(upstream.requests) == 2  # the blocked case never reached it
    saved = orjson.loads(tape.read_bytes())
    assert saved["format"] == "gateway-eval-cassette/1"
    assert [(i["model"], "events" in i["response"]) for i in saved["interactions"]] in (
        [("openai/gpt-4o-mini", False), ("openai/gpt-4o-mini", True)],
        [("openai/gpt-4o-mini", True), ("openai/gpt-4o-mini", False)],
    )
    replayer = Cassette(tape, "replay")
    async with InProcessClient(config_for("http://127.0.0.1:9", "replaying"), cassette=replayer) as client:
        replayed = await run(client, suite, tmp_path)
        missing = await run(client, Suite([Case("new", "never recorded", [Check("contains", "")])],
                                          [Target("gpt-test")]), tmp_path)  # fmt: skip
    assert replayed["status"] == "passed" and replayer.replayed == 2
    outputs = [[a["output"] for r in result["results"] for a in r["attempts"]] for result in (recorded, replayed)]
    assert outputs[0] == outputs[1]
    assert len(upstream.requests) == 2
    attempt = missing["results"][0]["attempts"][0]
    assert missing["results"][0]["status"] == "error" and "Not in cassette" in attempt["error"]
    with pytest.raises(CassetteError, match="no such cassette"):
        Cassette(tmp_path / "absent.json", "replay")


async def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log():
    terminal, log = io.StringIO(), io.StringIO()
    for stream, tty in ((terminal, True), (log, False)):
        progress = Progress(stream, tty=tty, every_s=0.0)
        progress.start("s", 2)
        progress.advance(0.5)
        progress.advance(1.0)
        progress.finish(1.0)
    assert terminal.getvalue().endswith("\rs [" + "#" * 30 + "] 2/2  $1.0000\n")
    assert log.getvalue().splitlines() == [
        "eval s: 2 attempts", "eval s: 1/2 attempts (50%), $0.5000", "eval s: 2/2 attempts (100%), $1.0000",
    ]  # fmt: skip
