"""The policy set in force: loaded at startup, reloaded on file change or on demand; a bad new version is
refused and the old one kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from pathlib import Path

import anyio.to_thread

from gateway.policy.loader import EMPTY, MakeCheck, PolicyError, PolicySet, load_policies, policy_files, unknown_keys

log = logging.getLogger("gateway.policies")


class PolicyStore:
    """Readers take `current` (an immutable PolicySet); reloads swap it whole."""

    def __init__(
        self, path: str | None, make_check: MakeCheck, *, key_names: Callable[[], Collection[str]] | None = None
    ) -> None:
        """key_names: every key id and prefix there is (the key cache's), to warn about applies_to.keys entries
        that match no key; None (`gateway policy check` without a database) checks none."""
        self.path = Path(path) if path else None
        self.make_check = make_check
        self.key_names = key_names
        self.last_error: str | None = None
        # At startup a bad file is fatal (PolicyError propagates); later it only refuses the new version.
        self.current: PolicySet = load_policies(self.path, make_check) if self.path else EMPTY
        self._signature = self.signature()
        self.log_warnings()

    def warnings(self) -> list[str]:
        """What in the set in force is valid but looks wrong: applies_to.keys entries that match no key."""
        return unknown_keys(self.current, self.key_names()) if self.key_names is not None else []

    def log_warnings(self) -> None:
        for warning in self.warnings():
            log.warning("%s; the policy applies to no call by it", warning)

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        if self.path is None or not self.path.exists():
            return ()
        try:
            return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in policy_files(self.path))
        except (OSError, PolicyError):
            return ()

    def reload(self) -> PolicySet:
        """Loads the files again; raises PolicyError (and keeps the current set) when they are not valid."""
        if self.path is None:
            return self.current
        signature = self.signature()
        try:
            policies = load_policies(self.path, self.make_check)
        except PolicyError as exc:
            self.last_error = str(exc)
            self._signature = signature  # do not retry the same broken files every second
            raise
        changed = policies.sha256 != self.current.sha256
        self.current, self.last_error, self._signature = policies, None, signature
        if changed:
            log.info("policies reloaded: %d files, sha256 %s", len(policies.files), policies.sha256[:12])
            self.log_warnings()
        return policies

    async def watch(self, interval_s: float = 1.0) -> None:
        """Background loop: reload when a policy file changes (mtime or size). A refused version is logged and the
        set in force kept; any other error ends the loop, for the task supervisor (gateway/tasks.py) to log and
        restart it. It looks at the files first and then sleeps, so a restarted watcher retries at once."""
        while True:
            if self.signature() != self._signature:
                try:
                    await anyio.to_thread.run_sync(self.reload)
                except PolicyError as exc:
                    log.error("refused the changed policies; keeping sha256 %s:\n%s", self.current.sha256[:12], exc)
            await asyncio.sleep(interval_s)
