"""/admin/evals/runs through the app: store a run, list and page, read one back; errors and roles."""

from __future__ import annotations

import httpx

from tests.conftest import AUTH
from tests.evals.run_results import make_result, run_id


async def key(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/admin/keys", headers=AUTH, json={"name": role, "role": role})
    return {"authorization": f"Bearer {r.json()['key']}"}


async def test_runs_are_stored_listed_in_pages_and_read_back(client: httpx.AsyncClient) -> None:
    member, viewer = await key(client, "member"), await key(client, "viewer")
    results = [make_result(rid=run_id()), make_result(rid=run_id(), statuses={"gpt-test": ["failed"]})]
    for result in results:
        r = await client.post("/admin/evals/runs", headers=member, json=result)
        assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == results[1]["run_id"] and created["object"] == "eval.run" and created["status"] == "failed"
    assert [(t["id"], t["status"], t["prompt_version"]) for t in created["targets"]] == [
        ("prompt:support-triage@staging", "passed", 2),
        ("gpt-test", "failed", None),
    ]
    page = (await client.get("/admin/evals/runs", headers=viewer, params={"limit": 1})).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert page["first_id"] == page["last_id"] == results[1]["run_id"]
    rest = (await client.get("/admin/evals/runs", headers=viewer, params={"before": page["last_id"]})).json()
    assert [run["id"] for run in rest["data"]] == [results[0]["run_id"]] and rest["has_more"] is False
    failed = (await client.get("/admin/evals/runs", headers=AUTH, params={"status": "failed"})).json()
    assert [run["id"] for run in failed["data"]] == [results[1]["run_id"]]
    one = await client.get(f"/admin/evals/runs/{results[0]['run_id']}", headers=viewer)
    assert one.status_code == 200 and one.json() == results[0]
    again = await client.post("/admin/evals/runs", headers=AUTH, json=results[0])  # a retried upload: no-op
    assert again.status_code == 201
    other = await client.post("/admin/evals/runs", headers=AUTH, json={**results[0], "status": "failed"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "eval_run_exists"


async def test_bad_results_unknown_runs_and_readers_get_openai_shaped_errors(client: httpx.AsyncClient) -> None:
    viewer = await key(client, "viewer")
    bad = make_result()
    bad["targets"][0]["prompt_version"] = 0
    r = await client.post("/admin/evals/runs", headers=AUTH, json=bad)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_value",
        "targets[0].prompt_version",
    )
    r = await client.post("/admin/evals/runs", headers=AUTH, json={**make_result(), "format": "gateway-eval-result/2"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "format"
    r = await client.post("/admin/evals/runs", headers=AUTH, json=[1, 2])
    assert r.status_code == 400
    r = await client.get(f"/admin/evals/runs/{run_id()}", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "eval_run_not_found"
    r = await client.get("/admin/evals/runs", headers=AUTH, params={"status": "green"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"
    r = await client.post("/admin/evals/runs", headers=viewer, json=make_result())
    assert r.status_code == 403
    member = await key(client, "member")  # runs hold every team's case outputs: members store them, never read them
    stored = make_result()
    assert (await client.post("/admin/evals/runs", headers=member, json=stored)).status_code == 201
    assert (await client.get("/admin/evals/runs", headers=member)).status_code == 403
    assert (await client.get(f"/admin/evals/runs/{stored['run_id']}", headers=member)).status_code == 403
    r = await client.get("/admin/evals/runs", headers={"authorization": "Bearer sk-nope"})
    assert r.status_code == 401
