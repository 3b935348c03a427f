"""The shipped gateway.yaml, policies/ and prompts/ do what the README says: its blocks uncomment cleanly and its
prompt example answers as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import orjson
import yaml

from gateway.app import create_app
from gateway.config import parse_config, parse_yaml
from gateway.prompts.cli import load_file
from tests.conftest import AUTH, MASTER_KEY

REPO = Path(__file__).resolve().parents[1]
SHIPPED = (REPO / "gateway.yaml").read_text()


def uncomment(text: str, first_line: str, *, until: str) -> str:
    """The README's "uncomment the block": drop one `# ` from each line, from first_line up to (not with) until."""
    lines, inside = [], False
    for line in text.splitlines():
        inside = (inside or line.strip() == first_line) and line.strip() != until
        lines.append(re.sub(r"^(\s*)# ?", r"\1", line, count=1) if inside else line)
    return "\n".join(lines) + "\n"


def test_shipped_config_with_the_gpt_4o_mini_block_uncommented_is_valid() -> None:
    text = uncomment(SHIPPED, "# - name: gpt-4o-mini", until="# Any vendor litellm supports goes through litellm:")
    config = parse_config(parse_yaml(text, "gateway.yaml"), source="gateway.yaml", env={"OPENAI_API_KEY": "sk-x"})
    model = next(m for m in config.models if m.name == "gpt-4o-mini")
    assert model.is_direct and model.fallbacks == () and model.timeout_s == 60


def test_shipped_config_with_both_provider_blocks_and_the_fallback_uncommented_is_valid() -> None:
    text = uncomment(SHIPPED, "# - name: gpt-4o-mini", until="# Any vendor litellm supports goes through litellm:")
    text = uncomment(text, "# - name: claude-haiku", until="# A local OpenAI-compatible server (vLLM, Ollama, "
                     "LM Studio) takes the direct path:")  # fmt: skip
    text = text.replace("  # fallbacks: [claude-haiku]", "  fallbacks: [claude-haiku]")
    env = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-y"}
    config = parse_config(parse_yaml(text, "gateway.yaml"), source="gateway.yaml", env=env)
    assert next(m for m in config.models if m.name == "gpt-4o-mini").fallbacks == ("claude-haiku",)


class RecordingClient:
    """Stands in for `client` in the README's snippet: keeps what the snippet asks the SDK to send."""

    def __init__(self) -> None:
        self.chat = self.completions = self
        self.sent: dict[str, object] = {}

    def create(self, *, extra_body: dict[str, object] | None = None, **fields: object) -> None:
        self.sent = {**fields, **(extra_body or {})}


async def test_readme_prompt_example_answers_with_the_shipped_config_and_prompts(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    data = yaml.safe_load(SHIPPED)
    shutil.copyfile(migrated_sqlite, tmp_path / "gateway.db")
    data.update(database_url=f"sqlite:///{tmp_path / 'gateway.db'}", spool_dir=str(tmp_path / "spool"),
                policies=str(REPO / "policies"), master_key=MASTER_KEY)  # fmt: skip
    app = create_app(parse_config(data, source="gateway.yaml", env={}), freeze_gc=False)
    section = (REPO / "README.md").read_text().split("## Prompt registry", 1)[1]
    assert "gateway prompts sync prompts/ --label production" in section
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    client = RecordingClient()
    exec(snippet, {"client": client})  # noqa: S102 - the README's own example, run as written
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
            for path in sorted((REPO / "prompts").glob("*.yaml")):  # what `prompts sync --label production` does
                spec = load_file(path).model_dump(mode="json")
                made = (await c.post("/admin/prompts", headers=AUTH, json=spec)).json()
                moved = await c.put(f"/admin/prompts/{spec['id']}/labels/production", headers=AUTH,
                                    json={"version": made["version"]})  # fmt: skip
                assert moved.is_success, moved.text
            r = await c.post("/v1/chat/completions", headers=AUTH, json=client.sent)
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]["message"]["content"]  # demo echoes, as the JSON the prompt asks for
    assert orjson.loads(answer) == {"echo": "The app crashes on login"}
