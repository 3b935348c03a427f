"""The promotion gate: a gated label (a prompt's now, a model alias's later) moves to a version only with a stored
passing run of the gate's suite against that version, or forced by an admin with a reason.

The suite's identity is `spec.suite_sha256`, the one the runner stores with each run: sha256 over the suite file's
bytes, then its dataset file's. Editing a case or a dataset row makes a new suite: runs of the old one no longer open
the gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import anyio.to_thread

from gateway.errors import EvalRequired, InvalidRequest, PermissionDenied
from gateway.evals.config import GateConfig
from gateway.evals.store import EvalRunStore


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
    from gateway.evals.spec import suite_sha256  # here: a server imports the suite loader only when a gate is asked

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
