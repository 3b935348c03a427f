"""Config files: interpolation, validation errors that name the file and field, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.settings import Settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_config_full_example_loads_with_env_interpolation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - name: gpt-4o-mini
    model: openai/gpt-4o-mini
    api_base: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    fallbacks: [claude-haiku]
    timeout_s: 60
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
  - name: claude-haiku
    model: anthropic/claude-3-5-haiku-20241022
    api_key: ${ANTHROPIC_API_KEY:-unset}
database_url: sqlite:///gateway.db
redis_url: null
policies: policies/
""",
    )
    config = load_config(path, env={"OPENAI_API_KEY": "sk-abc"})
    first, second = config.models
    assert first.api_key is not None and first.api_key.get_secret_value() == "sk-abc"
    assert second.api_key is not None and second.api_key.get_secret_value() == "unset"
    assert first.is_direct and not second.is_direct
    assert first.fallbacks == ("claude-haiku",)
    assert first.price is not None and first.price.output_per_mtok == 0.60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:\n  - name: a\n    model: gpt-4o\n", 'models[0].model: expected "provider/model"'),
        (
            "models:\n  - name: a\n    model: openai/x\n    timeout: 3\n",
            "models[0].timeout: Extra inputs are not",
        ),
        (
            "models:\n  - name: a\n    model: openai/x\n    timeout_s: -1\n",
            "models[0].timeout_s: Input should be greater",
        ),
        (
            "models:\n  - name: a\n    model: openai/x\n    fallbacks: [b]\n",
            "models[0].fallbacks[0]: unknown model 'b'",
        ),
        (
            "models:\n  - {name: a, model: openai/x}\n  - {name: a, model: openai/y}\n",
            "models[1].name: duplicate",
        ),
        (
            "models:\n  - {name: a, model: hosted_vllm/llama}\n",
            "api_base is required for provider 'hosted_vllm'",
        ),
        (
            "models:\n  - {name: a, model: hosted_vllm/llama, api_base: 'localhost:8000/v1'}\n",
            "'localhost:8000/v1' is not an http:// or https:// URL",
        ),
        (
            "models:\n  - {name: a, model: openai/x, api_base: 'https://user:pw@example.com/v1'}\n",
            "holds credentials: put them in api_key or headers",
        ),
        (
            'models:\n  - {name: a, model: openai/x, headers: {x-team: "a\\r\\nx-admin: 1"}}\n',
            "models[0].headers: header 'x-team' holds a line break",
        ),
        (
            'models:\n  - {name: a, model: openai/x, api_key: "sk-1\\n"}\n',
            "api_key cannot be sent as written: header 'authorization' holds a line break",
        ),
        (
            "models:\n  - {name: a, model: openai/x, api_key: '${NOPE}'}\n",
            "models[0].api_key: environment variable NOPE",
        ),
        ("server: {header_timeout_s: 0}\n", "server.header_timeout_s: Input should be greater than 0"),
        ("server: {max_header_bytes: 100}\n", "server.max_header_bytes: Input should be greater than or equal to 1024"),
        ("server: {max_conections: 10}\n", "server.max_conections: Extra inputs are not permitted"),
        ("models: [\n", "line 2, column 1: invalid YAML"),
        ("- just\n- a list\n", "(root): expected a mapping"),
    ],
)
def test_config_bad_file_names_file_field_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert expected in message


def test_config_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml", env={})


def test_settings_env_overrides_scalar_settings_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "database_url: sqlite:///from-file.db\nmodels: []\n")
    config = Settings(config=path, database_url="sqlite:///from-env.db", master_key="sk-x").resolve()
    assert config.database_url == "sqlite:///from-env.db"
    assert config.master_key is not None and config.master_key.get_secret_value() == "sk-x"


def test_config_direct_path_follows_provider_and_override() -> None:
    config = parse_config(
        {
            "models": [
                {"name": "a", "model": "groq/llama3"},
                {"name": "b", "model": "mistral/mistral-small", "path": "direct", "api_base": "http://x/v1"},
                {"name": "c", "model": "openai/gpt-4o", "path": "litellm"},
            ]
        },
        source="t",
        env={},
    )
    a, b, c = config.models
    assert (a.is_direct, a.base_url) == (True, "https://api.groq.com/openai/v1")
    assert (b.is_direct, b.base_url) == (True, "http://x/v1")
    assert c.is_direct is False
