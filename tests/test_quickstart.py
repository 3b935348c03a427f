"""The README's quick start, run as written: every bash and python block of "Five-minute quick start" but the one
that starts the server (this test serves the shipped gateway.yaml, policies and prompts itself, from a copy)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers import ServedGateway

ROOT = Path(__file__).resolve().parent.parent
MASTER = "sk-my-master-key"  # the README's


def quickstart_blocks() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Five-minute quick start") : readme.index("## API surface")]
    return re.findall(r"```(bash|python)\n(.*?)```", section, re.S)


def test_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = quickstart_blocks()
    assert [lang for lang, _ in blocks].count("python") == 1 and len(blocks) >= 6
    for name in ("gateway.yaml", "policies", "prompts"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp_path / name)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)  # `.venv/bin/gateway` as the README says
    served = ServedGateway(tmp_path / "gateway.yaml", env={"GATEWAY_MASTER_KEY": MASTER}, cwd=tmp_path).start()
    try:
        url = served.url

        def here(code: str) -> str:
            return code.replace("http://127.0.0.1:4000", url)

        script = ["set -euo pipefail"]
        for i, (lang, code) in enumerate(blocks):
            if "make serve" in code:
                continue
            script.append(f"echo '=== block {i}'")
            if lang == "python":
                (tmp_path / f"block{i}.py").write_text(here(code))
                script.append(f".venv/bin/python block{i}.py")
            else:
                script.append(here(code))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        run = subprocess.run(
            ["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        served.stop()
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    out = run.stdout
    assert ": ok, " in out  # step 1: config check
    assert '"content":"Hello, gateway"' in out  # step 3: the demo model echoes
    assert "x-gateway-approvals: apr_" in out.lower()  # step 5: the refund of 500 is held
    assert '"tool_calls":[{"id":"call_fake_0","type":"function","function":{"name":"refund"' in out  # released once
    assert re.search(r"ok: \d+ records, seq 1-\d+, head hash", out)  # audit verify: approvals and label moves
