"""The run's progress on stderr: a bar redrawn in place on a terminal, a line every few seconds otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
REDRAW_S = 0.1  # a terminal bar redraws at most this often
LINE_EVERY_S = 5.0  # a log gets one line this often


class Progress:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, every_s: float = LINE_EVERY_S) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = REDRAW_S if self.tty else every_s
        self.name = ""
        self.total = 0
        self.done = 0
        self._last = 0.0
        self._drawn = -1  # `done` when last drawn

    def start(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, total, 0
        self._last = time.monotonic()
        if not self.tty:
            self.stream.write(f"eval {name}: {total} attempts\n")
            self.stream.flush()

    def advance(self, spent_usd: float) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._draw(spent_usd)

    def finish(self, spent_usd: float) -> None:
        if self._drawn != self.done:
            self._draw(spent_usd)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, spent_usd: float) -> None:
        self._drawn = self.done
        share = self.done / self.total if self.total else 1.0
        if self.tty:
            filled = int(share * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\r{self.name} [{bar}] {self.done}/{self.total}  ${spent_usd:.4f}")
        else:
            self.stream.write(f"eval {self.name}: {self.done}/{self.total} attempts ({share:.0%}), ${spent_usd:.4f}\n")
        self.stream.flush()
