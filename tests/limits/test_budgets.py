"""Budgets as reservations and rate limits, end to end through the app: exact under concurrency."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import GatewayConfig
from tests.conftest import AUTH, MakeConfig, chat
from tests.fake_upstream import FakeUpstream

# $0.001 per output token and free input: one request with max_tokens=1 costs exactly $0.001.
PRICED = {"name": "priced", "model": "fake/echo", "price": {"input_per_mtok": 0, "output_per_mtok": 1000}}
# $0.001 per token, input and output alike, in process: embeddings and completions too.
METERED = {"name": "metered", "model": "fake/echo", "price": {"input_per_mtok": 1000, "output_per_mtok": 1000}}


@pytest.fixture
def config(make_config: MakeConfig, upstream_server: FakeUpstream) -> GatewayConfig:
    direct = {
        "name": "gpt-test",
        "model": "openai/gpt-4o-mini",
        "api_base": upstream_server.base_url,
        "price": {"input_per_mtok": 1000, "output_per_mtok": 1000},
    }
    return make_config(models=[PRICED, METERED, direct, {"name": "demo", "model": "fake/echo"}])


async def new_key(client: httpx.AsyncClient, **spec: object) -> str:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "budgeted", **spec})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def usage_rows(app: FastAPI) -> list[dict[str, object]]:
    services = app.state.services
    await services.shipper.flush()
    from sqlmodel import select

    from gateway.storage.tables import UsageRecord

    async with services.db.session() as session:
        return [r.model_dump() for r in (await session.exec(select(UsageRecord))).all()]


async def test_200_concurrent_requests_never_overspend_a_budget_of_50(client: httpx.AsyncClient, app: FastAPI) -> None:
    secret = await new_key(client, budget=0.05)
    headers = {"authorization": f"Bearer {secret}"}
    body = chat("priced", "hi", max_tokens=1)
    results = await asyncio.gather(
        *(client.post("/v1/chat/completions", headers=headers, json=body) for _ in range(200))
    )
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 50 and statuses.count(429) == 150
    refused = next(r for r in results if r.status_code == 429).json()["error"]
    assert refused["code"] == "budget_exceeded" and "$0.050000" in refused["message"]
    budgets = (await client.get("/admin/budgets", headers=AUTH)).json()["data"]
    assert [(b["spent"], b["reserved"]) for b in budgets] == [(0.05, 0.0)]
    rows = await usage_rows(app)
    assert len(rows) == 200
    assert sum(int(r["cost_nanos"]) for r in rows) == 50_000_000  # exactly the budget, to the nano-dollar
    assert sorted({int(r["status_code"]) for r in rows}) == [200, 429]


async def test_budget_boundary_exactly_at_budget_passes_one_cent_over_fails(client: httpx.AsyncClient) -> None:
    secret = await new_key(client, budget=0.002)
    headers = {"authorization": f"Bearer {secret}"}
    for _ in range(2):  # $0.001 each: the second lands exactly on the budget
        r = await client.post("/v1/chat/completions", headers=headers, json=chat("priced", "hi", max_tokens=1))
        assert r.status_code == 200
    r = await client.post("/v1/chat/completions", headers=headers, json=chat("priced", "hi", max_tokens=1))
    assert r.status_code == 429 and r.json()["error"]["type"] == "insufficient_quota"


async def test_failed_call_releases_its_reservation(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    secret = await new_key(client, budget=1.0)
    headers = {"authorization": f"Bearer {secret}"}
    upstream.fail_next(500, times=3)
    r = await client.post("/v1/chat/completions", headers=headers, json=chat("gpt-test", "hello", max_tokens=10))
    assert r.status_code == 502
    budgets = (await client.get("/admin/budgets", headers=AUTH)).json()["data"]
    assert [(b["spent"], b["reserved"]) for b in budgets] == [(0.0, 0.0)]


async def test_team_budget_binds_all_its_keys(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/teams", headers=AUTH, json={"name": "t", "budget": 0.003})
    assert r.status_code == 201
    keys = [await new_key(client, team="t") for _ in range(2)]
    statuses = []
    for i in range(4):
        r = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {keys[i % 2]}"},
            json=chat("priced", "hi", max_tokens=1),
        )
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 429]


async def test_stream_usage_is_requested_upstream_and_stripped_for_the_client(
    client: httpx.AsyncClient, app: FastAPI, upstream: FakeUpstream
) -> None:
    secret = await new_key(client, budget=1.0)
    body = chat("gpt-test", "three words here", stream=True, max_tokens=10)
    r = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"}, json=body)
    assert r.status_code == 200
    events = [e[6:] for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert all('"usage":{' not in e for e in events)  # the client did not ask for usage
    assert upstream.last.body is not None and upstream.last.body["stream_options"] == {"include_usage": True}
    (row,) = await usage_rows(app)
    assert row["completion_tokens"] == 3 and row["stream"] is True and row["status_code"] == 200
    assert int(row["cost_nanos"]) > 0


async def test_rpm_limit_returns_429_with_retry_after_and_headers(client: httpx.AsyncClient) -> None:
    secret = await new_key(client, rpm=2)
    headers = {"authorization": f"Bearer {secret}"}
    first = await client.post("/v1/chat/completions", headers=headers, json=chat("demo"))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await client.post("/v1/chat/completions", headers=headers, json=chat("demo"))).status_code == 200
    r = await client.post("/v1/chat/completions", headers=headers, json=chat("demo"))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-remaining-requests"] == "0"


async def test_usage_report_groups_by_model(client: httpx.AsyncClient, app: FastAPI) -> None:
    secret = await new_key(client)
    for model in ("priced", "priced", "demo"):
        await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"}, json=chat(model, "hi"))
    await app.state.services.shipper.flush()
    r = await client.get("/admin/usage", headers=AUTH, params={"group_by": "model"})
    rows = {row["group"]: row for row in r.json()["data"]}
    assert rows["priced"]["requests"] == 2 and rows["demo"]["requests"] == 1
    assert orjson.loads(r.content)["group_by"] == "model"


async def test_client_leaving_mid_stream_settles_what_was_streamed(make_config: MakeConfig) -> None:
    """A real server: the client reads two events, then hangs up; the reservation must not leak."""
    import uvicorn

    slow = {"name": "slow", "model": "fake/slow:3000", "price": {"input_per_mtok": 0, "output_per_mtok": 1000}}
    app = create_app(make_config(models=[slow]))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        async with httpx.AsyncClient(base_url=url) as c:
            secret = await new_key(c, budget=1.0)
            body = chat("slow", "one two three four five six seven", stream=True, max_tokens=50)
            async with c.stream(
                "POST", "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"}, json=body
            ) as r:
                lines = r.aiter_lines()
                seen = [line async for line in _take(lines, 3)]
            assert any(line.startswith("data: ") for line in seen)
            for _ in range(100):
                (budget,) = (await c.get("/admin/budgets", headers=AUTH)).json()["data"]
                if budget["reserved"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert budget["reserved"] == 0.0
            assert 0 < budget["spent"] < 0.05  # what was streamed, not the 50-token worst case
        rows = await usage_rows(app)
        assert [(row["status_code"], row["stream"]) for row in rows] == [(499, True)]
    finally:
        server.should_exit = True
        await task


async def _take(lines, count: int):  # type: ignore[no-untyped-def]
    async for line in lines:
        yield line
        count -= 1
        if count == 0:
            return


async def test_a_huge_prompt_is_counted_off_the_event_loop(client: httpx.AsyncClient) -> None:
    # One megabyte of a single word takes ~0.35 s to count; meanwhile a small call of another key is answered. (On
    # the event loop the small call waits for the whole count; the margins hold on a loaded 2-core machine.)
    big = {"authorization": f"Bearer {await new_key(client, budget=100)}"}
    small = {"authorization": f"Bearer {await new_key(client, budget=100)}"}
    huge = asyncio.create_task(
        client.post("/v1/chat/completions", headers=big, json=chat("priced", "A" * 1_000_000, max_tokens=1))
    )
    await asyncio.sleep(0.05)  # the huge prompt is being counted
    started = asyncio.get_running_loop().time()
    r = await client.post("/v1/chat/completions", headers=small, json=chat("priced", "hi", max_tokens=1))
    answered_after = asyncio.get_running_loop().time() - started
    assert r.status_code == 200
    assert not huge.done() and answered_after < 0.15
    assert (await huge).status_code == 200


async def test_budget_refusal_names_the_scope_its_counters_and_the_worst_case(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": "budgeted", "budget": 0.002})
    key_id, headers = r.json()["id"], {"authorization": f"Bearer {r.json()['key']}"}
    first = await client.post("/v1/chat/completions", headers=headers, json=chat("priced", "hi", max_tokens=1))
    assert first.status_code == 200

    # n=2 answers of up to 1 token each: $0.002 worst case, over the $0.001 left.
    r = await client.post("/v1/chat/completions", headers=headers, json=chat("priced", "hi", max_tokens=1, n=2))

    assert r.status_code == 429
    assert r.json()["error"]["message"] == (
        f"Budget exceeded for key {key_id}: $0.001000 spent and $0.000000 reserved of $0.002000 (monthly); "
        "this request may cost up to $0.002000. Lower max_tokens, or raise the budget."
    )


@pytest.mark.parametrize(
    ("limits", "allowed"),
    [
        ({"max_tokens": 1}, True),
        ({"max_tokens": 2}, False),
        ({"max_completion_tokens": 1, "max_tokens": 5}, True),  # the newer field wins
        ({"max_completion_tokens": 2, "max_tokens": 1}, False),
        ({}, False),  # no limit given: the model's whole output cap is reserved
    ],
)
async def test_reservation_is_the_worst_case_of_the_requested_output(
    client: httpx.AsyncClient, limits: dict[str, int], allowed: bool
) -> None:
    secret = await new_key(client, budget=0.001)
    body = {**chat("priced", "hi"), **limits}
    r = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"}, json=body)
    assert r.status_code == (200 if allowed else 429), r.text


async def test_an_exhausted_budget_still_admits_a_free_model(client: httpx.AsyncClient) -> None:
    secret = await new_key(client, budget=0.001)
    headers = {"authorization": f"Bearer {secret}"}
    assert (await client.post("/v1/chat/completions", headers=headers, json=chat("priced", max_tokens=1))).is_success
    assert (
        await client.post("/v1/chat/completions", headers=headers, json=chat("priced", max_tokens=1))
    ).status_code == 429

    free = await client.post("/v1/chat/completions", headers=headers, json=chat("demo", max_tokens=1))  # costs $0

    assert free.status_code == 200


async def test_the_prompt_counts_in_the_worst_case(client: httpx.AsyncClient) -> None:
    secret = await new_key(client, budget=0.005)  # gpt-test: $0.001 per token, input and output alike
    body = chat("gpt-test", "one two three four five six seven eight", max_tokens=1)

    r = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"}, json=body)

    assert r.status_code == 429  # 1 output token fits the budget; the prompt's tokens do not
    assert "this request may cost up to $0.0" in r.json()["error"]["message"]


async def test_embeddings_reservation_is_the_prompt_alone(client: httpx.AsyncClient) -> None:
    # An embedding has no output: its worst case is its input tokens at the input price, not the output cap.
    secret = await new_key(client, budget=0.000001)  # below any call of `metered`: every call is refused
    body = {"model": "metered", "input": "one two three"}

    r = await client.post("/v1/embeddings", headers={"authorization": f"Bearer {secret}"}, json=body)

    assert r.status_code == 429
    assert "this request may cost up to $0.003000." in r.json()["error"]["message"]


async def test_an_empty_prompt_reserves_only_the_output(client: httpx.AsyncClient) -> None:
    secret = await new_key(client, budget=0.000001)
    body = {"model": "metered", "prompt": "", "max_tokens": 2}

    r = await client.post("/v1/completions", headers={"authorization": f"Bearer {secret}"}, json=body)

    assert r.status_code == 429
    assert "this request may cost up to $0.002000." in r.json()["error"]["message"]


@pytest.mark.parametrize("budget", [None, 0.001], ids=["key_without_budget", "master_key"])
async def test_calls_outside_any_budget_are_answered_and_book_nothing(
    client: httpx.AsyncClient, budget: float | None
) -> None:
    spec = {} if budget is None else {"budget": budget}  # a budgeted key exists, so /admin/budgets lists a row
    secret = await new_key(client, **spec)
    headers = AUTH if budget is not None else {"authorization": f"Bearer {secret}"}

    r = await client.post("/v1/chat/completions", headers=headers, json=chat("priced", "hi", max_tokens=5))

    assert r.status_code == 200, r.text
    budgets = (await client.get("/admin/budgets", headers=AUTH)).json()["data"]
    assert [(b["spent"], b["reserved"]) for b in budgets] == ([(0.0, 0.0)] if budget is not None else [])


async def test_a_call_cancelled_while_its_reservation_is_answered_releases_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # The store books the hold, then its answer is slow to come back (a Redis round trip); the client leaves then.
    secret = await new_key(client, budget=1.0)
    counters = app.state.services.counters
    reserve, booked = counters.reserve, asyncio.Event()

    async def slow_answer(*args: object, **kwargs: object) -> object:
        refusal = await reserve(*args, **kwargs)
        booked.set()
        await asyncio.sleep(60)
        return refusal

    counters.reserve = slow_answer
    body = chat("priced", "hi", max_tokens=5)
    call = asyncio.create_task(
        client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"}, json=body)
    )
    await booked.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    budgets = (await client.get("/admin/budgets", headers=AUTH)).json()["data"]
    assert [(b["spent"], b["reserved"]) for b in budgets] == [(0.0, 0.0)]  # not $0.005 held for 15 minutes
