"""The modules under mutation and the test files that own each one (kept small: every mutant reruns them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # the module's file, relative to the repository root
    tests: tuple[str, ...]  # pytest arguments: files or file::test ids (relative to the repository root), -k
    timeout_s: float | None = None  # a mutant's time limit; default 4 x baseline + 30 s

    def mutant_timeout(self, baseline_s: float) -> float:
        """Seconds a mutant may run before it counts as a timeout: generous by default (the machine is shared, and
        a slow run is not a hang); a module whose loops hang under mutation sets a shorter limit, which never falls
        below twice the baseline."""
        if self.timeout_s is None:
            return 4 * baseline_s + 30
        return max(self.timeout_s, 2 * baseline_s)

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


_TOOLS = ("tests/toolcalls/test_toolrules.py", "tests/toolcalls/test_toolargs.py")
_COUNTERS = ("tests/limits/test_counters.py", "tests/limits/test_rate_windows.py")
_MEMORY = (*_COUNTERS, "-k", "not redis")  # the tests run once per store: each store needs only its own
_REDIS = (*_COUNTERS, "-k", "not memory")
_PII = ("tests/checks/test_pii.py", "tests/checks/test_pii_formats.py")
_AUDIT = ("tests/audit/test_audit_chain.py", "tests/audit/test_audit_retention.py")
_ASSERTIONS = ("tests/evals/test_assertions.py",)
_GOVERNANCE = ("tests/evals/test_assertions_governance.py",)
_MODELS = ("tests/evals/test_assertions_models.py", "-k", "not local_minilm")  # the real MiniLM: not per mutant

TARGETS: tuple[Target, ...] = (
    Target("toolrules_engine", "gateway/toolcalls/engine.py", _TOOLS),
    Target("toolrules_rules", "gateway/toolcalls/rules.py", _TOOLS),
    Target("counters", "gateway/limits/counters.py", _MEMORY),  # the shared rules: either store exercises them
    Target("counters_memory", "gateway/limits/counters_memory.py", _MEMORY),
    Target("counters_redis", "gateway/limits/counters_redis.py", _REDIS),
    Target("budget", "gateway/limits/budget.py", ("tests/limits/test_budgets.py",)),
    Target("injection", "gateway/checks/injection.py", ("tests/checks/test_injection.py",)),
    Target("audit_chain", "gateway/audit/chain.py", _AUDIT),
    Target("audit_retention", "gateway/audit/retention.py", ("tests/audit/test_audit_retention.py",)),
    Target("approvals", "gateway/approvals/service.py", ("tests/approvals/test_service.py",)),
    Target("evals_baseline", "gateway/evals/baseline.py", ("tests/evals/test_baseline.py",)),
    Target("evals_datasets", "gateway/evals/datasets.py", ("tests/evals/test_datasets.py",)),
    Target("eval_assertions", "gateway/evals/assertions/deterministic.py", _ASSERTIONS),
    Target("eval_governance", "gateway/evals/assertions/governance.py", _GOVERNANCE),
    Target("eval_similar", "gateway/evals/assertions/semantic.py", _MODELS),
    Target("eval_judge", "gateway/evals/assertions/judge.py", _MODELS),
    Target("evals_spec", "gateway/evals/spec.py", ("tests/evals/test_spec.py",)),
    Target("evals_templating", "gateway/evals/templating.py", ("tests/evals/test_templating.py",)),
    Target("evals_reports", "gateway/evals/reports.py", ("tests/evals/test_reports.py",)),
    Target("streamguard", "gateway/policy/streamguard.py", ("tests/policy/test_streamguard.py",)),
    Target("secrets", "gateway/checks/secrets.py", ("tests/checks/test_secrets.py",)),
    Target("pii", "gateway/checks/pii.py", _PII, timeout_s=12),  # its scanning loops' mutants hang: 12 s, not 40
    Target("pii_formats", "gateway/checks/pii_formats.py", _PII),
)


def get_target(name: str) -> Target:
    """The target called `name`; raises KeyError listing the known names."""
    for target in TARGETS:
        if target.name == name:
            return target
    raise KeyError(f"unknown module {name!r}; known: {', '.join(t.name for t in TARGETS)}")
