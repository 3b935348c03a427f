"""The promotion gate: a gated label (a prompt's now, a model alias's later) moves to a version only with a stored
passing run of the gate's suite against that version, or forced by an admin with a reason.

`suite_sha256` is the suite's identity for the gate and the runner alike: sha256 over the suite file's bytes, then
the bytes of each dataset file it names, in document order. A dataset is named by a `dataset` or `datasets` key
anywhere in the suite (a path, a list of paths, or a mapping with `path`), relative to the suite's folder. Editing a
case or a dataset row makes a new suite: runs of the old one no longer open the gate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import anyio.to_thread
import yaml

from gateway.errors import EvalRequired, InvalidRequest, PermissionDenied
from gateway.evals.config import GateConfig
from gateway.evals.store import EvalRunStore

DATASET_KEYS = ("dataset", "datasets")


def suite_sha256(path: str | Path) -> str:
    """The suite's sha256 (see the module docstring); raises OSError for an unreadable suite or dataset file and
    ValueError for a suite that is not YAML."""
    suite = Path(path)
    text = suite.read_bytes()
    digest = hashlib.sha256(text)
    for dataset in dataset_files(suite, text):
        digest.update(dataset.read_bytes())
    return digest.hexdigest()


def dataset_files(suite: Path, text: bytes) -> list[Path]:
    """The dataset files a suite names, in document order, relative to its folder."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{suite}: not YAML ({exc})") from None
    return [suite.parent / name for name in _named(data)]


def _named(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in DATASET_KEYS:
                yield from _paths(value)
            else:
                yield from _named(value)
    elif isinstance(node, list):
        for item in node:
            yield from _named(item)


def _paths(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item)
    elif isinstance(value, Mapping) and isinstance(value.get("path"), str):
        yield value["path"]


async def check_promotion(
    store: EvalRunStore,
    gates: Mapping[str, GateConfig],
    *,
    kind: Literal["prompt", "model"],
    name: str,
    label: str,
    version: int,
    force_reason: str | None,
    actor_is_admin: bool,
) -> str | None:
    """The passing run that lets `name`'s `label` move to `version`; None when the label is not gated or the move is
    forced (force_reason not None: an admin's, and not blank). Raises EvalRequired (409) without a passing run,
    PermissionDenied (403) for a force by a non-admin, InvalidRequest (400) for a force without a reason."""
    if force_reason is not None:
        if not actor_is_admin:
            raise PermissionDenied("Only an admin may force a gated move.", param="force", code="force_needs_admin")
        if not force_reason.strip():
            raise InvalidRequest("A forced move needs a reason (it is audited).", param="reason")
        return None
    gate = gates.get(label)
    if gate is None:
        return None
    target = f"{kind} {name!r} version {version}"
    try:
        sha256 = await anyio.to_thread.run_sync(suite_sha256, gate.suite)
    except (OSError, ValueError) as exc:
        raise EvalRequired(
            f"Label {label!r} is gated by suite {gate.suite}, which cannot be read here ({exc}); fix the suite, or "
            "an admin may force the move with a reason.",
            param="label",
        ) from None
    run_id = await store.passing_run(sha256, kind=kind, name=name, version=version, min_pass_rate=gate.min_pass_rate)
    if run_id is None:
        raise EvalRequired(
            f"Label {label!r} is gated: moving it to {target} needs a stored run of suite {gate.suite} "
            f"(sha256 {sha256[:12]}) against {target} with a pass rate of at least {gate.min_pass_rate:g}. Run "
            f"`gateway eval run {gate.suite}` against it and store the result, or an admin may force the move with "
            "a reason.",
            param="label",
        )
    return run_id
