"""Runs `gateway serve` as a real subprocess on 127.0.0.1 for tests, and stops it (politely or with SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedGateway:
    """One `python -m gateway serve` process; its output goes to a log file shown if it fails to start."""

    def __init__(
        self, config: Path, *, env: dict[str, str] | None = None, workers: int = 1, cwd: Path | None = None
    ) -> None:
        self.config = config
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, **(env or {})}
        self.workers = workers
        self.log_path = config.with_suffix(f".{self.port}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20) -> ServedGateway:
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "gateway", "serve", "--config", str(self.config), "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        self.process = subprocess.Popen(command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.cwd)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/readyz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"gateway did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()


def write_config(folder: Path, upstream_url: str, extra: str = "") -> Path:
    """A served gateway's config in `folder`: model gpt-test on the fake upstream, its own database and spool."""
    config = folder / "gateway.yaml"
    config.write_text(
        f"""
models:
  - name: gpt-test
    model: openai/gpt-4o-mini
    api_base: {upstream_url}
database_url: sqlite:///{folder / "gateway.db"}
spool_dir: {folder / "spool"}
{extra}"""
    )
    return config
