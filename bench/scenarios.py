"""The systems a benchmark compares: the fake upstream called directly, our gateway bare and with full
governance, and LiteLLM proxy; each started fresh in a temporary directory and stopped afterwards."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Server, ServerError, clean_env, free_port, is_listening

BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = ("direct", "bare", "full", "litellm")
LABELS = {
    "direct": "direct upstream",
    "bare": "gateway bare",
    "full": "gateway full",
    "litellm": "LiteLLM proxy",
}
MODEL = "gpt-4o-mini"
MASTER_KEY = "sk-bench-master-0123456789abcdef"
LITELLM_MASTER_KEY = "sk-litellm-bench-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"
REDIS_URL = "redis://127.0.0.1:6379/0"
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
# Never refuses, yet makes every per-key stage run: meter (prompt tokens), rate limit, budget, usage record.
# `full` also loads the shipped policies/ (guardrails on input and output), which pass the benchmark's text.
FULL_GOVERNANCE_KEY = {
    "name": "bench-full-governance",
    "budget": 1_000_000,
    "period": "total",
    "rpm": 1_000_000_000,
    "tpm": 1_000_000_000_000,
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a load goes, with which key, and the root of the process tree whose CPU and RSS it costs."""

    scenario: str
    url: str
    auth: str | None
    pid: int


@dataclass(frozen=True, slots=True)
class Workspace:
    tmp: Path
    upstream_base: str  # http://127.0.0.1:PORT/v1
    upstream_pid: int
    workers: int = 1
    litellm_venv: Path = BENCH_DIR / ".venv-litellm"
    gateway_src: Path | None = None  # a directory holding an exported `gateway` package, run instead of the tree
    request_log: bool = True  # False: the gateway's config turns its request log off (log.requests), for an A/B

    @property
    def policies_dir(self) -> Path:
        """The shipped policies (policies/*.yaml) that `full` runs with, from the same commit as the gateway."""
        return (self.gateway_src or BENCH_DIR.parent) / "policies"

    @classmethod
    def from_args(cls, args: argparse.Namespace, tmp: Path, upstream_base: str, upstream_pid: int) -> Workspace:
        return cls(
            tmp, upstream_base, upstream_pid, args.workers, args.litellm_venv, args.gateway_src, args.request_log
        )


def export_gateway(rev: str, dest: Path) -> Path:
    """`git archive REV gateway policies` into dest: a benchmark runs one commit whatever the working tree holds."""
    dest.mkdir(parents=True, exist_ok=True)
    repo = ["git", "-C", str(BENCH_DIR.parent)]
    has_policies = subprocess.run([*repo, "cat-file", "-e", f"{rev}:policies"], capture_output=True).returncode == 0
    paths = ["gateway", "policies"] if has_policies else ["gateway"]
    archive = subprocess.run([*repo, "archive", "--format=tar", rev, *paths], capture_output=True)
    if archive.returncode != 0:
        raise ServerError(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    tree = subprocess.run([*repo, "ls-tree", "-r", "--name-only", rev, "gateway"], capture_output=True, text=True)
    if any(name.endswith(".c") for name in tree.stdout.split()):
        build_extensions(repo, rev, dest)
    return dest


def build_extensions(repo: list[str], rev: str, dest: Path) -> None:
    """Compile an exported commit's C extensions (the token counter) next to its sources, as `pip install` does."""
    archive = subprocess.run(
        [*repo, "archive", "--format=tar", rev, "pyproject.toml", "README.md"], capture_output=True
    )
    if archive.returncode != 0:
        raise ServerError(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    wheels = dest / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(dest)],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        raise ServerError(f"building {rev}'s C extensions failed:\n{built.stderr[-2000:]}")
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive_file:
            for member in archive_file.namelist():
                if member.endswith(".so"):
                    archive_file.extract(member, dest)


def request_body(*, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello to the benchmark in ten words."}],
        "max_tokens": 32,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def write_bodies(tmp: Path) -> dict[bool, Path]:
    """The request bodies as files (wrk reads them), keyed by `stream`."""
    paths = {}
    for stream in (False, True):
        path = tmp / ("body-stream.json" if stream else "body.json")
        path.write_bytes(request_body(stream=stream))
        paths[stream] = path
    return paths


@contextmanager
def run_upstream(tmp: Path, *, delay_ms: float = 0.0) -> Iterator[tuple[Server, str]]:
    """bench/upstream.py as its own process; yields it and its base URL (ending in /v1)."""
    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port), "--delay-ms", str(delay_ms)]
    with Server("fake upstream", command, log_path=tmp / "upstream.log") as server:
        server.wait_ready(f"http://127.0.0.1:{port}/health", timeout_s=15)
        yield server, f"http://127.0.0.1:{port}/v1"


@contextmanager
def open_target(scenario: str, space: Workspace) -> Iterator[Target]:
    """Starts what the scenario needs (nothing for `direct`) and yields where to send the load."""
    if scenario == "direct":
        yield Target(scenario, f"{space.upstream_base}/chat/completions", None, space.upstream_pid)
    elif scenario in ("bare", "full"):
        with run_gateway(space, name=scenario) as (server, url):
            target = Target(scenario, f"{url}/v1/chat/completions", MASTER_KEY, server.pid)
            if scenario == "full":
                target = Target(scenario, target.url, create_key(url), server.pid)
                wait_for_key(target)
            yield target
    elif scenario == "litellm":
        with run_litellm(space) as (server, url):
            yield Target(scenario, f"{url}/v1/chat/completions", LITELLM_MASTER_KEY, server.pid)
    else:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")


def gateway_config(space: Workspace, home: Path, *, governed: bool, quiet: bool = False) -> str:
    """One model on the fake upstream; `governed` adds the shipped policies (input and output guardrails); `quiet`
    makes the periodic database polls rare, where the gateway's config has the settings (instructions mode)."""
    lines = [
        "models:",
        f"  - name: {MODEL}",
        f"    model: openai/{MODEL}",
        f"    api_base: {space.upstream_base}",
        f"    api_key: {UPSTREAM_KEY}",
        f"database_url: sqlite:///{home / 'gateway.db'}",
        f"spool_dir: {home / 'spool'}",
    ]
    if governed and space.policies_dir.is_dir():
        lines.append(f"policies: {space.policies_dir}")
    if not space.request_log:
        lines.append("log: {requests: false}")
    if space.workers > 1:
        lines.append(f"redis_url: {REDIS_URL}")  # the gateway refuses several workers without shared counters
    source = (space.gateway_src or BENCH_DIR.parent) / "gateway" / "config.py"
    if quiet and "cache_poll_s" in source.read_text():  # commits before 2026-12-05 poll every 0.5 s regardless
        lines += ["cache_poll_s: 3600", "approvals: {sweep_interval_s: 60}"]
    return "\n".join(lines) + "\n"


@contextmanager
def run_gateway(space: Workspace, *, name: str, wrap: Sequence[str] = ()) -> Iterator[tuple[Server, str]]:
    """`gateway serve` with its own SQLite database and spool in the temporary directory; `wrap` is a command
    prefix (instructions mode: valgrind), under which the server is started as `python -m gateway`, its database
    polls made rare."""
    if space.workers > 1 and not is_listening("127.0.0.1", 6379):
        raise ServerError(f"--workers {space.workers} needs Redis at {REDIS_URL}; start redis-server first.")
    home = space.tmp / f"gateway-{name}"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "gateway.yaml"
    config.write_text(gateway_config(space, home, governed=name == "full", quiet=bool(wrap)))
    port = free_port()
    script = Path(sys.executable).parent / "gateway"  # the console script, as an operator runs it
    gateway = [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]
    served = [*wrap, sys.executable, "-m", "gateway"] if wrap else gateway
    command = [*served, "serve", "--config", str(config), "--port", str(port), "--workers", str(space.workers)]
    env = clean_env({**OFFLINE_ENV, "GATEWAY_MASTER_KEY": MASTER_KEY})
    if space.gateway_src is not None:
        # PYTHONPATH comes before the editable install's finder, so the exported package is the one imported.
        env["PYTHONPATH"] = str(space.gateway_src)
    migrate(gateway, config, env=env, cwd=home)
    with Server(f"gateway ({name})", command, log_path=home / "gateway.log", env=env, cwd=home) as server:
        url = f"http://127.0.0.1:{port}"
        server.wait_ready(f"{url}/readyz", timeout_s=600 if wrap else 60)
        yield server, url


def migrate(gateway: list[str], config: Path, *, env: dict[str, str], cwd: Path) -> None:
    """`gateway migrate` first, as a deployment runs it: the server then starts on a database at head and never
    imports alembic. A revision older than the command skips it (its server migrates at startup)."""
    done = subprocess.run(
        [*gateway, "migrate", "--config", str(config)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0 and "invalid choice: 'migrate'" not in done.stderr:
        raise ServerError(f"gateway migrate failed with {done.returncode}:\n{done.stderr[-2000:]}")


def create_key(url: str) -> str:
    """A virtual key through POST /admin/keys whose limits are set (so every stage runs) but never reached."""
    request = urllib.request.Request(
        f"{url}/admin/keys",
        data=json.dumps(FULL_GOVERNANCE_KEY).encode(),
        headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["key"])
    except urllib.error.HTTPError as exc:
        raise ServerError(f"POST /admin/keys failed with {exc.code}: {exc.read().decode(errors='replace')}") from None


def wait_for_key(target: Target, *, in_a_row: int = 10, timeout_s: float = 30) -> None:
    """Until the new key has worked `in_a_row` times on fresh connections: with several workers, the one that
    did not create it learns of it a moment later (cache invalidation through Redis)."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < in_a_row:
        try:
            check_target(target, stream=False)
            streak += 1
        except ServerError:
            if time.monotonic() > deadline:
                raise
            streak = 0
            time.sleep(0.05)


def litellm_config(space: Workspace) -> str:
    return "\n".join(
        [
            "model_list:",
            f"  - model_name: {MODEL}",
            "    litellm_params:",
            f"      model: openai/{MODEL}",
            f"      api_base: {space.upstream_base}",
            f"      api_key: {UPSTREAM_KEY}",
            "general_settings:",
            f"  master_key: {LITELLM_MASTER_KEY}",
            "",
        ]
    )


@contextmanager
def run_litellm(space: Workspace) -> Iterator[tuple[Server, str]]:
    """LiteLLM proxy from its own virtual environment, one model on the fake upstream, master key, no database."""
    executable = space.litellm_venv / "bin" / "litellm"
    if not executable.exists():
        raise ServerError(
            f"LiteLLM is not installed at {executable}. Create it with:\n"
            f"  python3 -m venv {space.litellm_venv} && {space.litellm_venv}/bin/pip install 'litellm[proxy]'\n"
            "or pass --skip-litellm."
        )
    home = space.tmp / "litellm"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "litellm.yaml"
    config.write_text(litellm_config(space))
    port = free_port()
    command = [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", str(space.workers)]
    env = clean_env(OFFLINE_ENV)
    with Server("LiteLLM proxy", command, log_path=home / "litellm.log", env=env, cwd=home) as server:
        url = f"http://127.0.0.1:{port}"
        server.wait_ready(f"{url}/health/liveliness", timeout_s=180)
        yield server, url


def redis_cpu_s() -> float | None:
    """CPU seconds Redis has used (INFO cpu), or None if it is not reachable: several gateway workers share their
    counters through it, so its CPU belongs to the gateway's cost per request."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as conn:
            conn.sendall(b"INFO cpu\r\n")
            data = b""
            while b"\r\n" not in data or len(data) < data.index(b"\r\n") + 2 + int(data[1 : data.index(b"\r\n")]):
                chunk = conn.recv(65536)  # a RESP bulk string: $<length>\r\n<payload>\r\n
                if not chunk:
                    break
                data += chunk
    except (OSError, ValueError):
        return None
    fields = dict(line.split(":", 1) for line in data.decode(errors="replace").splitlines() if ":" in line)
    try:
        return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])
    except (KeyError, ValueError):
        return None


def check_target(target: Target, *, stream: bool) -> None:
    """One request that must succeed before any load is sent: a misconfigured scenario fails loudly, early."""
    headers = {"content-type": "application/json"}
    if target.auth:
        headers["authorization"] = f"Bearer {target.auth}"
    request = urllib.request.Request(target.url, data=request_body(stream=stream), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise ServerError(f"{LABELS[target.scenario]}: test request failed with {exc.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError) as exc:
        raise ServerError(f"{LABELS[target.scenario]}: test request failed: {exc}") from None
    if stream and b"data: [DONE]" not in body:
        raise ServerError(f"{LABELS[target.scenario]}: the test stream did not end with [DONE]: {body[-300:]!r}")
