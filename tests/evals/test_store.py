"""The eval run store on SQLite (and PostgreSQL once): a row per target, validation with field paths, idempotent saves,
listing with filters and pages, and the promotion gate's lookup of a passing run."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.evals.store import EvalRunStore
from gateway.storage.db import Database, open_database
from gateway.storage.tables import EvalRun
from tests.evals.run_results import SHA, make_result, run_id


async def open_store(url: str) -> AsyncIterator[EvalRunStore]:
    async with open_database(url) as database:
        yield EvalRunStore(database)


@pytest.fixture
async def store(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[EvalRunStore]:
    shutil.copyfile(migrated_sqlite, tmp_path / "gateway.db")
    async for opened in open_store(f"sqlite:///{tmp_path / 'gateway.db'}"):
        yield opened


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[EvalRunStore]:
    async for opened in open_store(postgres_url):
        yield opened


async def rows(db: Database) -> list[EvalRun]:
    async with db.session() as session:
        return list((await session.exec(select(EvalRun).order_by(EvalRun.target_id))).all())


async def test_save_writes_a_row_per_target_with_its_own_status_and_the_result_once(store: EvalRunStore) -> None:
    result = make_result(statuses={"gpt-test": ["passed", "failed", "error"]})
    await store.save(result)
    model, prompt = await rows(store.db)
    assert (model.target_kind, model.model, model.status, model.run_status) == ("model", "gpt-test", "failed", "failed")
    assert model.counts == {"total": 3, "passed": 1, "failed": 1, "errors": 1, "skipped": 0}
    assert model.pass_rate == pytest.approx(1 / 3)
    assert (prompt.prompt_id, prompt.prompt_version, prompt.status) == ("support-triage", 2, "passed")
    assert prompt.pass_rate == 1.0
    assert (prompt.suite_sha256, prompt.cost_usd_target, prompt.git_commit) == (SHA, 0.0123, "abc123")
    assert [row.result is not None for row in (prompt, model)] == [True, False]  # stored once, on the first target's
    assert await store.get(result["run_id"]) == result


async def test_save_again_is_a_no_op_and_other_results_under_the_id_conflict(store: EvalRunStore) -> None:
    result = make_result()
    await store.save(result)
    await store.save(result)
    assert len(await rows(store.db)) == 2
    with pytest.raises(Conflict) as raised:
        await store.save({**result, "git_commit": "def456"})
    assert raised.value.code == "eval_run_exists"


@pytest.mark.parametrize(
    ("change", "param", "says"),
    [
        ({"format": "promptfoo/1"}, "format", "Unknown eval result format 'promptfoo/1'"),
        ({"run_id": "run-1"}, "run_id", "String should match pattern"),
        ({"suite": {"name": "x", "path": "x.yaml", "sha256": "abc"}}, "suite.sha256", "String should match"),
        ({"targets": [{"id": "p", "kind": "prompt"}]}, "targets[0]", "a prompt target needs its prompt_id"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
        ({"pass_rate": 1.5}, "pass_rate", "less than or equal to 1"),
    ],
)
async def test_save_refuses_a_bad_result_naming_the_field(
    store: EvalRunStore, change: dict[str, object], param: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await store.save({**make_result(), **change})
    assert raised.value.param == param and says in raised.value.message
    assert await rows(store.db) == []


async def test_save_refuses_a_case_of_an_unknown_target(store: EvalRunStore) -> None:
    result = make_result()
    result["results"][0]["target"] = "gpt-other"
    with pytest.raises(InvalidRequest, match="results\\[0\\].target: 'gpt-other' is not one of the run's targets"):
        await store.save(result)


async def test_list_filters_and_pages_newest_first(store: EvalRunStore) -> None:
    ids = [run_id() for _ in range(3)]
    await store.save(make_result(rid=ids[0], suite="triage"))
    await store.save(make_result(rid=ids[1], suite="policies", model="gpt-other", prompt=None))
    await store.save(make_result(rid=ids[2], suite="triage", statuses={"gpt-test": ["failed"]}))
    page, more = await store.list(limit=2)
    assert [run["id"] for run in page] == [ids[2], ids[1]] and more
    page, more = await store.list(limit=2, before=ids[1])
    assert [run["id"] for run in page] == [ids[0]] and not more
    assert [run["id"] for run in (await store.list(suite="triage"))[0]] == [ids[2], ids[0]]
    assert [run["id"] for run in (await store.list(suite="evals/policies.yaml"))[0]] == [ids[1]]
    assert [run["id"] for run in (await store.list(target="gpt-other"))[0]] == [ids[1]]
    (failed,), _ = await store.list(status="failed")
    assert failed["id"] == ids[2] and [t["status"] for t in failed["targets"]] == ["passed", "failed"]
    assert "results" not in failed
    with pytest.raises(NotFound):
        await store.list(before=run_id())


async def check_passing_run(store: EvalRunStore) -> None:
    assert await store.passing_run(SHA, kind="prompt", name="support-triage", version=2, min_pass_rate=1.0) is None
    failing = make_result(statuses={"prompt:support-triage@staging": ["passed", "failed"]})
    await store.save(failing)
    found = await store.passing_run(SHA, kind="prompt", name="support-triage", version=2, min_pass_rate=0.5)
    assert found == failing["run_id"]  # 1 of 2 passed: enough for a gate of 0.5, not of 1.0
    assert await store.passing_run(SHA, kind="prompt", name="support-triage", version=2, min_pass_rate=1.0) is None
    incomplete = make_result(status="incomplete")
    await store.save(incomplete)  # every case it ran passed, but it stopped early: never a pass
    assert await store.passing_run(SHA, kind="prompt", name="support-triage", version=2, min_pass_rate=1.0) is None
    passing = make_result(statuses={"gpt-test": ["failed"]})  # another target failing does not hold the prompt back
    await store.save(passing)
    assert (
        await store.passing_run(SHA, kind="prompt", name="support-triage", version=2, min_pass_rate=1.0)
        == (passing["run_id"])
    )
    assert await store.passing_run(SHA, kind="prompt", name="support-triage", version=3, min_pass_rate=0.0) is None
    assert await store.passing_run("0" * 64, kind="prompt", name="support-triage", version=2, min_pass_rate=0) is None
    assert await store.passing_run(SHA, kind="model", name="gpt-test", version=None, min_pass_rate=0.0) is not None


async def test_passing_run_needs_the_suite_sha_the_version_and_the_pass_rate(store: EvalRunStore) -> None:
    await check_passing_run(store)


@pytest.mark.postgres
async def test_passing_run_on_postgres(pg_store: EvalRunStore) -> None:
    await check_passing_run(pg_store)
    assert len((await pg_store.list())[0]) == 3
