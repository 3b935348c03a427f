"""Services: what the app holds for its lifetime (config, database, upstream client, registry, pipeline)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from gateway.config import GatewayConfig
from gateway.governance.auth import Authenticator, AuthHook
from gateway.pipeline.parse import ParseHook
from gateway.pipeline.routing import RoutingHook
from gateway.pipeline.runner import Pipeline
from gateway.providers.dispatch import Dispatcher
from gateway.providers.openai_compat import OpenAICompatProvider, create_session
from gateway.providers.registry import ProviderRegistry
from gateway.storage.db import Database, open_database


@dataclass(slots=True)
class Services:
    config: GatewayConfig
    db: Database
    http: aiohttp.ClientSession
    registry: ProviderRegistry
    authenticator: Authenticator
    pipeline: Pipeline
    started_at: int


def build_pipeline(config: GatewayConfig, registry: ProviderRegistry, authenticator: Authenticator) -> Pipeline:
    """The stage order of DESIGN.md §2; later stages (budgets, guardrails, ...) are inserted here."""
    hooks = [AuthHook(authenticator), ParseHook(), RoutingHook(registry)]
    return Pipeline(hooks, Dispatcher(backoff_s=config.retry_backoff_s))


@asynccontextmanager
async def build_services(config: GatewayConfig) -> AsyncIterator[Services]:
    """Opens the database (running migrations) and the upstream client; closes both on exit."""
    master_key = config.master_key.get_secret_value() if config.master_key else None
    async with open_database(config.database_url) as db:
        http = create_session()
        try:
            registry = ProviderRegistry(config, direct=OpenAICompatProvider(http))
            authenticator = Authenticator(master_key)
            yield Services(
                config=config,
                db=db,
                http=http,
                registry=registry,
                authenticator=authenticator,
                pipeline=build_pipeline(config, registry, authenticator),
                started_at=int(time.time()),
            )
        finally:
            await http.close()
