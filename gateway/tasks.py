"""TaskSupervisor: runs the app's background loops and keeps them running; /readyz reads their state.

A background loop (the policy watcher, the spool shippers, the approval sweep, the change feeds, webhook
delivery) that raises is logged with its name and traceback, waits (exponential backoff from `backoff_s`,
doubling up to `max_backoff_s`) and starts again; one that returns is a bug of the same kind and is treated
alike. Before this, a loop that met an error it did not expect (seen: `OSError: [Errno 24] Too many open files`
in the policy watcher after a connection flood) ended silently, for the life of the process.

A task is *down* while it waits to restart, and *crash-looping* once it has failed `crash_loop_after` times in a
row, each run shorter than `stable_s`, until its current run has lasted `stable_s`. /readyz answers 503 naming
every task that is either: the instance is missing a duty (a policy edit it does not load, records it does not
ship) that a load balancer or an operator should know about. A single failure followed by a healthy restart is
logged but does not make the instance unready.

Catching every Exception here is the point of this module: it is the boundary of each background loop, and the
exception is logged, never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("gateway.tasks")

Loop = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class TaskState:
    """What /readyz and the log know about one background task."""

    name: str
    running: bool = False  # False while it waits to restart (and after stop())
    failures: int = 0  # consecutive failed runs (a run that lasted stable_s resets it)
    started_at: float = 0.0  # monotonic time of the current run's start
    last_error: str | None = None


class TaskSupervisor:
    """Starts named loops, restarts each one that fails, and reports those that are down or crash-looping."""

    def __init__(
        self,
        *,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        crash_loop_after: int = 3,
        stable_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.crash_loop_after = crash_loop_after
        self.stable_s = stable_s
        self.clock = clock
        self.states: dict[str, TaskState] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, loop: Loop) -> None:
        """Runs `loop()` as the background task `name` until stop(); `loop` is called again for each restart."""
        if name in self.states:
            raise ValueError(f"a background task named {name!r} is already running")
        state = self.states[name] = TaskState(name)
        self._tasks.append(asyncio.create_task(self._supervise(state, loop), name=f"gateway:{name}"))

    async def stop(self) -> None:
        """Cancels every task and waits for each to finish (a loop may finish what it was doing first)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for state in self.states.values():
            state.running = False

    def unhealthy(self) -> dict[str, str]:
        """The tasks that are down or crash-looping, each with what happened; empty when all run."""
        now = self.clock()
        found = {}
        for state in self.states.values():
            looping = state.failures >= self.crash_loop_after and now - state.started_at < self.stable_s
            if not state.running or looping:
                what = "restarting" if not state.running else "crash-looping"
                found[state.name] = f"{what} after {state.failures} consecutive failures; last: {state.last_error}"
        return found

    async def _supervise(self, state: TaskState, loop: Loop) -> None:
        while True:
            state.running, state.started_at = True, self.clock()
            try:
                await loop()
                error = "the loop returned"
                exc_info: BaseException | None = None
            except Exception as exc:  # noqa: BLE001 - the boundary of a background loop: logged, then restarted
                error = f"{type(exc).__name__}: {exc}"
                exc_info = exc
            if self.clock() - state.started_at >= self.stable_s:
                state.failures = 0  # it ran well for a while: this failure starts a new count
            state.running, state.failures, state.last_error = False, state.failures + 1, error
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (state.failures - 1))
            log.error(
                "background task %r stopped (%s); restarting in %.3g s (failure %d in a row)",
                state.name, error, delay, state.failures,
                exc_info=exc_info, extra={"event": "task_failed", "task": state.name, "failures": state.failures},
            )  # fmt: skip
            del exc_info
            await asyncio.sleep(delay)
