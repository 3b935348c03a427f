"""The local embedding provider (`local/all-MiniLM-L6-v2`) through the app: real model, no network.

The first test in a process loads torch and the model (a few seconds, once per test process)."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.config import ConfigError, GatewayConfig, parse_config
from gateway.errors import ModelUnavailable
from gateway.providers import local
from gateway.providers.local import LocalEncoder
from tests.conftest import AUTH, MakeConfig, chat

LOCAL = [{"name": "minilm", "model": "local/all-MiniLM-L6-v2"}, {"name": "demo", "model": "fake/echo"}]


@pytest.fixture
def config(make_config: MakeConfig) -> GatewayConfig:
    return make_config(models=LOCAL)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_local_embeddings_are_unit_vectors_that_rank_meaning(client: httpx.AsyncClient) -> None:
    texts = ["How do I reset my password?", "I forgot my login credentials", "The recipe needs two eggs"]
    r = await client.post("/v1/embeddings", headers=AUTH, json={"model": "minilm", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.sqrt(cosine(v, v)) - 1) < 1e-4 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > len(texts)


async def test_local_embeddings_base64_matches_floats(client: httpx.AsyncClient) -> None:
    floats = await client.post("/v1/embeddings", headers=AUTH, json={"model": "minilm", "input": "same text"})
    packed = await client.post(
        "/v1/embeddings", headers=AUTH, json={"model": "minilm", "input": "same text", "encoding_format": "base64"}
    )
    decoded = struct.unpack("<384f", base64.b64decode(packed.json()["data"][0]["embedding"]))
    assert max(abs(a - b) for a, b in zip(decoded, floats.json()["data"][0]["embedding"], strict=True)) < 1e-6


@pytest.mark.parametrize(
    ("payload", "param", "words"),
    [
        ({"input": "word " * 400}, "input", "reads at most 256"),
        ({"input": [[1, 2, 3]]}, "input", "token arrays"),
        ({"input": "hi", "dimensions": 64}, "dimensions", "384 dimensions"),
    ],
)
async def test_local_embeddings_refuse_what_the_model_cannot_do(
    client: httpx.AsyncClient, payload: dict[str, object], param: str, words: str
) -> None:
    r = await client.post("/v1/embeddings", headers=AUTH, json={"model": "minilm", **payload})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert words in r.json()["error"]["message"]


async def test_local_model_refuses_chat_by_name(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", headers=AUTH, json=chat("minilm"))
    assert r.status_code == 400
    assert "/v1/embeddings" in r.json()["error"]["message"]


def test_unknown_local_model_stops_startup() -> None:
    with pytest.raises(ConfigError, match="unknown local model 'bge-large'"):
        parse_config({"models": [{"name": "x", "model": "local/bge-large"}]}, source="gateway.yaml", env={})


def test_a_gateway_without_local_models_never_imports_torch(tmp_path: Path) -> None:
    # The shipped config and policies, one call end to end: torch, sentence-transformers and chromadb stay unloaded.
    root = Path(__file__).resolve().parents[2]
    script = f"""
import asyncio, sys, httpx
from gateway.app import create_app
import yaml
from gateway.config import parse_config

shipped = yaml.safe_load(open({str(root / "gateway.yaml")!r}))
config = parse_config({{**shipped, "database_url": "sqlite:///{tmp_path}/g.db", "spool_dir": "{tmp_path}/spool",
    "policies": {str(root / "policies")!r}, "master_key": "sk-test-master-0123456789"}},
    source="gateway.yaml", env={{}})
app = create_app(config)
async def main():
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
            r = await c.post("/v1/chat/completions", headers={{"authorization": "Bearer sk-test-master-0123456789"}},
                             json={{"model": "demo", "messages": [{{"role": "user", "content": "hi"}}]}})
            assert r.status_code == 200, r.text
asyncio.run(main())
print(sorted(m for m in ("torch", "sentence_transformers", "chromadb", "onnxruntime", "numpy") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_local_extra_is_a_clear_503_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if the 'local' extra were not installed
    with pytest.raises(ModelUnavailable, match="install the gateway with its 'local' extra") as raised:
        LocalEncoder("all-MiniLM-L6-v2").encode(["hi"])
    assert (raised.value.status_code, raised.value.code) == (503, "model_unavailable")


def test_weights_other_than_the_published_ones_are_refused_before_torch_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A copy of the model folder whose weights differ by one byte: a small file stands in for the 87 MiB one (only
    # its hash is read before the refusal, so the size changes nothing but the test's time).
    real = Path(local.model_path("all-MiniLM-L6-v2"))
    with (real / local.WEIGHTS_FILE).open("rb") as weights:
        head = bytearray(weights.read(4096))
    head[100] ^= 0xFF
    (tmp_path / local.WEIGHTS_FILE).write_bytes(bytes(head))
    monkeypatch.setattr(local, "model_path", lambda name: tmp_path)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # reaching the import would fail differently
    torch_before = "torch" in sys.modules
    with pytest.raises(ModelUnavailable) as raised:
        LocalEncoder("all-MiniLM-L6-v2").encode(["hi"])
    assert ("torch" in sys.modules) == torch_before  # refused before torch loads
    message = raised.value.message
    assert (raised.value.status_code, raised.value.code) == (503, "model_unavailable")
    assert str(tmp_path / local.WEIGHTS_FILE) in message and local.WEIGHTS_SHA256["all-MiniLM-L6-v2"] in message
    assert hashlib.sha256(bytes(head)).hexdigest() in message


def test_the_installed_weights_are_the_published_ones() -> None:
    folder = local.model_path("all-MiniLM-L6-v2")
    local.check_weights(folder, local.WEIGHTS_SHA256["all-MiniLM-L6-v2"])  # raises on a mismatch
    assert (
        local._checked[folder / local.WEIGHTS_FILE]
        == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )


async def test_similar_assertions_with_the_local_minilm_tell_a_paraphrase_from_another_topic() -> None:
    """`similar` of the eval suites on the real all-MiniLM-L6-v2 (here, beside the other tests that load it, so one
    test worker pays for torch)."""
    from gateway.evals.assertions import evaluate_many, parse_assertion
    from gateway.evals.observed import Observed
    from gateway.providers.local import get_encoder

    encoder = get_encoder("all-MiniLM-L6-v2")
    embedded: list[list[str]] = []

    class Local:
        vars: dict[str, object] = {}

        async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
            assert model == "local/all-MiniLM-L6-v2"
            embedded.append(texts)
            return (await encoder.aencode(texts)).tolist()  # type: ignore[no-any-return]

        async def complete(self, model: str, messages: list[dict[str, object]]) -> tuple[str, float]:
            raise AssertionError("no judge here")

    expected = "Your refund has been issued and will reach your card within five days."
    outputs = [
        "We have sent your money back; expect it on your card in about five days.",
        "The weather in Lisbon is sunny today.",
        expected,
    ]
    spec = parse_assertion({"type": "similar", "value": expected, "threshold": 0.6})
    ctx = Local()
    results = await evaluate_many([(spec, Observed(request_id="r", status=200, text=t), ctx) for t in outputs])
    assert [r.passed for r in results] == [True, False, True], [r.reason for r in results]
    assert results[2].score == pytest.approx(1.0, abs=1e-5) and results[1].score < 0.2
    assert len(embedded) == 1  # one batch: three outputs and the expected value, each once
