"""Shared fixtures: offline environment, configs, the app driven through ASGITransport, the fake upstream."""

from __future__ import annotations

import os

# Offline facts (DESIGN.md §7), set before litellm is first imported; respx only sees httpx traffic.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["DISABLE_AIOHTTP_TRANSPORT"] = "True"

import shutil  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator, Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402
import pytest  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from psycopg import sql  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import GatewayConfig, parse_config  # noqa: E402
from gateway.storage.db import run_migrations  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MASTER_KEY = "sk-test-master-0123456789"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}

MakeConfig = Callable[..., GatewayConfig]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, uniquely named database on the local PostgreSQL for one test, dropped afterwards."""
    name = f"gateway_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"  # plain scheme: must map to psycopg 3
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the newest schema, migrated once: each test's database starts as a copy of it.

    Migrating a new database takes ~28 ms; a copy ~0.2 ms, for every test that starts an app. The migrations
    themselves are tested from an empty database in tests/storage/test_db.py.
    """
    path = tmp_path_factory.mktemp("template") / "gateway.db"
    run_migrations(f"sqlite:///{path}")
    return path


@pytest.fixture
def make_config(tmp_path: Path, upstream_server: FakeUpstream, migrated_sqlite: Path) -> MakeConfig:
    """A config whose `gpt-test` model reaches the fake upstream on the direct path."""

    def make(*, models: list[dict[str, object]] | None = None, **settings: object) -> GatewayConfig:
        database = tmp_path / "gateway.db"
        if "database_url" not in settings and not database.exists():
            shutil.copyfile(migrated_sqlite, database)
        default_models: list[dict[str, object]] = [
            {
                "name": "gpt-test",
                "model": "openai/gpt-4o-mini",
                "api_base": upstream_server.base_url,
                "api_key": "sk-upstream-secret",
                "timeout_s": 5,
            },
            {"name": "demo", "model": "fake/echo"},
        ]
        data: dict[str, object] = {
            "models": default_models if models is None else models,
            "master_key": MASTER_KEY,
            "database_url": f"sqlite:///{tmp_path / 'gateway.db'}",
            "spool_dir": str(tmp_path / "spool"),
            "retry_backoff_s": 0.001,
            **settings,
        }
        return parse_config(data, source="test", env={})

    return make


@pytest.fixture
def config(make_config: MakeConfig) -> GatewayConfig:
    return make_config()


@pytest.fixture
def app(config: GatewayConfig) -> FastAPI:
    return create_app(config, freeze_gc=False)  # the production path (freeze) runs in the served tests


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):  # ASGITransport does not run the lifespan itself
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


def chat(model: str, text: str = "hello", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
