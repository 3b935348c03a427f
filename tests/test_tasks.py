"""Background tasks: a loop that fails is logged, restarted with backoff, and reported by /readyz while down."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.checks.base import Check
from gateway.checks.context import ContextCheck, build_check
from gateway.tasks import TaskState, TaskSupervisor
from gateway.telemetry.logformat import JSONFormatter
from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream

POLICY = """name: words
guardrails:
  - {{id: words-in, stage: input, check: keywords, params: {{words: [{word}]}}, action: block}}
"""


class FlakyChecks:
    """make_check that fails like the reported watcher did (EMFILE) for its next `failures` calls."""

    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, name: str, params: dict[str, object]) -> Check | ContextCheck:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return build_check(name, params)


async def eventually(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "words.yaml").write_text(POLICY.format(word="alpha"))
    return folder


@pytest.fixture
def checks() -> FlakyChecks:
    return FlakyChecks()


@pytest.fixture
def app(make_config: MakeConfig, policies: Path, checks: FlakyChecks) -> FastAPI:
    tasks = TaskSupervisor(backoff_s=0.02, max_backoff_s=0.05, crash_loop_after=2, stable_s=0.3)
    return create_app(make_config(policies=str(policies)), freeze_gc=False, tasks=tasks, make_check=checks)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


async def test_policy_watcher_failure_is_logged_reported_by_readyz_and_a_later_edit_loads(
    client: httpx.AsyncClient,
    app: FastAPI,
    policies: Path,
    checks: FlakyChecks,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Over 0.5 s: the watcher looks at the files once a second, so the edit is seen up to 1 s after it is made.
    store = app.state.services.policies
    assert (await client.get("/readyz")).json()["tasks"] == "ok"
    checks.failures = 10**6  # reloads fail, as under a file-descriptor exhaustion, until the test ends it below
    (policies / "words.yaml").write_text(POLICY.format(word="beta"))

    await eventually(lambda: "policy-watcher" in app.state.services.tasks.unhealthy(), timeout_s=3)
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "OSError: [Errno 24] Too many open files" in ready.json()["tasks"]["policy-watcher"]
    failed = [r for r in caplog.records if r.name == "gateway.tasks"]
    assert failed and failed[0].levelno == logging.ERROR and failed[0].exc_info is not None
    assert "'policy-watcher' stopped (OSError: [Errno 24] Too many open files)" in failed[0].getMessage()
    line = orjson.loads(JSONFormatter().format(failed[0]))  # as the operator log writes it
    assert (line["event"], line["task"], line["level"]) == ("task_failed", "policy-watcher", "error")
    assert "OSError: [Errno 24] Too many open files" in line["exception"]

    # The failures stop: the restarted watcher loads the edit without anyone touching the files again.
    checks.failures = 0
    await eventually(lambda: store.current.policies[0].guardrails[0].check.words == ["beta"])
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("gpt-test", "beta release"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "policy_denied"
    assert len(upstream.requests) == 0
    await eventually(lambda: not app.state.services.tasks.unhealthy())
    assert (await client.get("/readyz")).status_code == 200


async def test_supervisor_backs_off_exponentially_up_to_the_cap_and_restarts_a_loop_that_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []

    async def loop() -> None:
        runs.append("run")
        if len(runs) % 2:
            raise RuntimeError(f"boom {len(runs)}")  # odd runs fail, even ones return: both are restarted

    tasks = TaskSupervisor(backoff_s=0.001, max_backoff_s=0.004, crash_loop_after=3, stable_s=10)
    tasks.start("flaky", loop)
    await eventually(lambda: len(runs) >= 6)
    await tasks.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.tasks"]
    assert messages[:5] == [
        "background task 'flaky' stopped (RuntimeError: boom 1); restarting in 0.001 s (failure 1 in a row)",
        "background task 'flaky' stopped (the loop returned); restarting in 0.002 s (failure 2 in a row)",
        "background task 'flaky' stopped (RuntimeError: boom 3); restarting in 0.004 s (failure 3 in a row)",
        "background task 'flaky' stopped (the loop returned); restarting in 0.004 s (failure 4 in a row)",
        "background task 'flaky' stopped (RuntimeError: boom 5); restarting in 0.004 s (failure 5 in a row)",
    ]
    assert tasks.states["flaky"].failures == len(messages)  # none of the runs lasted stable_s: no reset


def test_supervisor_reports_a_crash_loop_until_the_run_has_lasted_stable_s() -> None:
    now = [100.0]
    tasks = TaskSupervisor(crash_loop_after=2, stable_s=30, clock=lambda: now[0])
    state = TaskState("feed", running=True, failures=2, started_at=100.0, last_error="OSError: x")
    tasks.states["feed"] = state
    assert tasks.unhealthy() == {"feed": "crash-looping after 2 consecutive failures; last: OSError: x"}
    now[0] = 129.9
    assert "feed" in tasks.unhealthy()
    now[0] = 130.0
    assert tasks.unhealthy() == {}
    state.failures = 1  # one failure, restarted and running: logged, but the instance stays ready
    now[0] = 100.0
    assert tasks.unhealthy() == {}
