"""CPU time and resident memory of a process and all its descendants, read from /proc (no psutil needed)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TreeSample:
    """One reading of a process tree: CPU seconds used so far (user + system, reaped children included)
    and the resident set size of its largest process and of all of them together."""

    cpu_s: float
    rss_max_bytes: int
    rss_total_bytes: int
    processes: int

    @property
    def rss_max_mb(self) -> float:
        return self.rss_max_bytes / MB

    @property
    def rss_total_mb(self) -> float:
        return self.rss_total_bytes / MB


def read_stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds, RSS bytes) of one process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    rss_pages = int(fields[21])
    return ppid, (utime + stime + cutime + cstime) / CLOCK_TICKS, rss_pages * PAGE_BYTES


def descendants(root: int) -> list[int]:
    """root and every process below it, found by scanning /proc for parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def sample_tree(root: int) -> TreeSample:
    """CPU and RSS of root and its descendants right now; a tree that has exited reads as zeros."""
    cpu, rss_max, rss_total, count = 0.0, 0, 0, 0
    for pid in descendants(root):
        stat = read_stat(pid)
        if stat is None:
            continue
        cpu += stat[1]
        rss_max = max(rss_max, stat[2])
        rss_total += stat[2]
        count += 1
    return TreeSample(cpu_s=cpu, rss_max_bytes=rss_max, rss_total_bytes=rss_total, processes=count)


def wait_idle(root: int, *, below: float = 0.05, window_s: float = 0.5, timeout_s: float = 20.0) -> float:
    """Wait until the tree uses under `below` of a core over `window_s` (a cell's leftover work, such as usage
    records still being shipped, done); returns the seconds waited. Gives up after timeout_s."""
    waited = 0.0
    last = sample_tree(root).cpu_s
    while waited < timeout_s:
        time.sleep(window_s)
        waited += window_s
        now = sample_tree(root).cpu_s
        if now - last < below * window_s:
            break
        last = now
    return waited
