"""Services: what the app holds for its lifetime (config, database, caches, counters, spool, pipeline)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from gateway.approvals.killswitch import ToolSwitch
from gateway.approvals.service import ApprovalService
from gateway.approvals.webhooks import WebhookNotifier
from gateway.audit.log import AuditLog
from gateway.calls.caller import Period
from gateway.checks.context import build_check
from gateway.config import GatewayConfig
from gateway.evals.gate import check_promotion
from gateway.evals.store import EvalRunStore
from gateway.identity.auth import Authenticator, AuthHook
from gateway.identity.keycache import KeyCache
from gateway.identity.keys import KeyService
from gateway.limits.budget import BudgetHook
from gateway.limits.counters import Counters, period_start
from gateway.limits.counters_memory import MemoryCounters
from gateway.limits.ratelimit import RateLimitHook
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.parse import ParseHook
from gateway.pipeline.routing import RoutingHook
from gateway.pipeline.runner import Pipeline
from gateway.policy.guardrails import GuardrailEngine
from gateway.policy.hook import InputGuardrailHook, OutputGuardrailHook
from gateway.policy.loader import MakeCheck
from gateway.policy.store import PolicyStore
from gateway.prompts.hook import PromptHook
from gateway.prompts.registry import PromptRegistry
from gateway.prompts.store import PromptStore
from gateway.providers.connections import ConnectionPool
from gateway.providers.openai_compat import OpenAICompatProvider
from gateway.providers.registry import ProviderRegistry
from gateway.storage.changefeed import poll_feeds
from gateway.storage.db import Database, open_database
from gateway.tasks import TaskSupervisor
from gateway.telemetry.hook import Telemetry, open_telemetry
from gateway.telemetry.oplog import log_admin_event
from gateway.toolcalls.governor import ToolGovernor
from gateway.toolcalls.hook import ToolCallHook
from gateway.usage.meter import MeterHook, PromptCounter
from gateway.usage.pricing import PriceTable
from gateway.usage.recorder import RecorderHook
from gateway.usage.report import spent_by_scope
from gateway.usage.shipper import UsageShipper
from gateway.usage.spool import UsageSpool
from gateway.usage.tokens import TokenCounter

log = logging.getLogger("gateway")


@dataclass(slots=True)
class Services:
    config: GatewayConfig
    db: Database
    http: aiohttp.ClientSession
    registry: ProviderRegistry
    authenticator: Authenticator
    keys: KeyService
    key_cache: KeyCache
    counters: Counters
    prices: PriceTable
    tokens: PromptCounter
    policies: PolicyStore
    guardrails: GuardrailEngine
    spool: UsageSpool
    shipper: UsageShipper
    audit: AuditLog
    approvals: ApprovalService
    tool_switch: ToolSwitch
    webhooks: WebhookNotifier
    prompts: PromptStore
    prompt_registry: PromptRegistry
    eval_runs: EvalRunStore
    pipeline: Pipeline
    started_at: int
    telemetry: Telemetry
    tasks: TaskSupervisor


def build_pipeline(services: Services) -> Pipeline:
    """The stage order of DESIGN.md §2: before_request runs top to bottom, and so does after_response (the meter
    prices the call before the budget settles it and before output guardrails may still refuse it)."""
    hooks = [
        AuthHook(services.authenticator),
        ParseHook(),
        PromptHook(services.prompt_registry, max_request_bytes=services.config.max_request_bytes),
        RoutingHook(services.registry),
        InputGuardrailHook(services.guardrails),
        MeterHook(services.tokens, services.prices),
        RateLimitHook(services.counters),
        BudgetHook(services.counters, services.prices),
        OutputGuardrailHook(services.guardrails),
        ToolCallHook(
            ToolGovernor(services.policies, services.approvals, services.tool_switch),
            services.approvals,
            services.guardrails,
        ),
        *services.telemetry.hooks(),
        RecorderHook(services.spool, services.audit),
    ]
    return Pipeline(hooks, Dispatcher(backoff_s=services.config.retry_backoff_s))


def create_session() -> aiohttp.ClientSession:
    """The aiohttp client of webhooks and HTTP checks (not of model calls): pooled, no cookie jar, no proxy
    lookups from the environment."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


async def open_counters(config: GatewayConfig, stack: AsyncExitStack) -> tuple[Counters, object | None]:
    """In memory for one process; in Redis (shared, atomic) when redis_url is set."""
    if not config.redis_url:
        counters: Counters = MemoryCounters()
        stack.push_async_callback(counters.close)
        return counters, None
    from gateway.limits.counters_redis import RedisCounters

    redis_counters = await RedisCounters.from_url(config.redis_url)
    stack.push_async_callback(redis_counters.close)
    return redis_counters, redis_counters.client


async def seed_budgets(db: Database, cache: KeyCache, counters: Counters) -> None:
    """Spend of the current periods, from the database, so a restart does not forget what was spent."""
    now = datetime.now(UTC)
    periods: dict[Period, datetime] = {}
    for entry in cache.entries():
        for scope in entry.budgets:
            periods.setdefault(scope.period, period_start(scope.period, now))
    spent: dict[tuple[Period, str], dict[str, int]] = {}
    for period, start in periods.items():
        for column in ("key_id", "team_id"):
            spent[(period, column)] = await spent_by_scope(db, since=start, column=column)  # type: ignore[arg-type]
    for entry in cache.entries():
        for scope in entry.budgets:
            kind, _, ident = scope.name.partition(":")
            amount = spent[(scope.period, "key_id" if kind == "key" else "team_id")].get(ident, 0)
            await counters.seed_spent(scope.name, scope.period, periods[scope.period], amount)


@asynccontextmanager
async def build_services(
    config: GatewayConfig, *, tasks: TaskSupervisor | None = None, make_check: MakeCheck | None = None
) -> AsyncIterator[Services]:
    """Opens everything in order and closes it in reverse; background tasks stop before the spool flushes.

    `tasks` (how background loops restart) and `make_check` (how policies build their checks) are seams for
    tests and embedders; the defaults are the production ones."""
    tasks = tasks or TaskSupervisor()
    master_key = config.master_key.get_secret_value() if config.master_key else None
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(config.database_url))
        counters, redis = await open_counters(config, stack)
        spool = UsageSpool(Path(config.spool_dir))
        spool.open()
        shipper = UsageShipper(db, spool)
        stack.push_async_callback(shipper.close)  # a last flush, then the spool closes
        shipped = await shipper.ship_leftovers()  # what a previous process left behind
        if shipped:
            log.info("shipped %d usage records left by a previous process", shipped)
        audit = AuditLog(db, Path(config.spool_dir), config=config.audit, observer=log_admin_event)
        stack.push_async_callback(audit.close)  # a last flush, then the audit spool closes
        chained = await audit.open()  # chains what a previous process left behind
        if chained:
            log.info("chained %d audit events left by a previous process", chained)
        key_cache = KeyCache(db, redis=redis)  # type: ignore[arg-type]
        await key_cache.reload()
        await seed_budgets(db, key_cache, counters)
        http = create_session()
        stack.push_async_callback(http.close)
        pool = ConnectionPool()
        stack.push_async_callback(pool.close)
        registry = ProviderRegistry(config, direct=OpenAICompatProvider(pool))
        tokens = PromptCounter(TokenCounter())
        make_check = make_check or functools.partial(build_check, session=lambda: http, count=tokens.prompt)
        # A bad policy file stops startup here; applies_to.keys entries that match no key are logged as warnings.
        policies = PolicyStore(config.policies, make_check, key_names=lambda: key_cache.names)
        telemetry = open_telemetry(config, stack)
        webhooks = WebhookNotifier(config.approvals.webhooks, lambda: http)
        approvals = ApprovalService(db, audit, webhooks, sweep_interval_s=config.approvals.sweep_interval_s)
        tool_switch = ToolSwitch(db, redis=redis)  # type: ignore[arg-type]
        await tool_switch.reload()
        eval_runs = EvalRunStore(db)
        prompt_gate = functools.partial(check_promotion, eval_runs, config.prompts.gates, kind="prompt")
        prompt_registry = PromptRegistry(
            db,
            audit,
            protected_labels=config.prompts.protected_labels,
            redis=redis,
            gate=prompt_gate,  # type: ignore[arg-type]
        )
        await prompt_registry.reload()
        services = Services(
            config=config,
            db=db,
            http=http,
            registry=registry,
            authenticator=Authenticator(master_key, key_cache),
            keys=KeyService(db),
            key_cache=key_cache,
            counters=counters,
            prices=PriceTable(config.models),
            tokens=tokens,
            policies=policies,
            guardrails=GuardrailEngine(policies),
            spool=spool,
            shipper=shipper,
            audit=audit,
            approvals=approvals,
            tool_switch=tool_switch,
            webhooks=webhooks,
            prompts=prompt_registry.store,
            prompt_registry=prompt_registry,
            eval_runs=eval_runs,
            pipeline=None,  # type: ignore[arg-type]  # built next: the pipeline's hooks need the services
            started_at=int(time.time()),
            telemetry=telemetry,
            tasks=tasks,
        )
        services.pipeline = build_pipeline(services)
        start_background_tasks(services, redis=redis is not None)
        try:
            yield services
        finally:
            await tasks.stop()


def start_background_tasks(services: Services, *, redis: bool) -> None:
    """Every loop the app runs beside requests, supervised: logged, backed off and restarted when one fails."""
    tasks, config = services.tasks, services.config
    feeds = [services.key_cache.feed, services.tool_switch.feed, services.prompt_registry.feed]
    tasks.start("usage-shipper", services.shipper.run)
    tasks.start("audit-log", services.audit.run)
    tasks.start("change-feeds", functools.partial(poll_feeds, feeds, interval_s=config.cache_poll_s))
    tasks.start("approval-sweep", services.approvals.run)
    tasks.start("webhooks", services.webhooks.run)
    if config.policies:
        tasks.start("policy-watcher", services.policies.watch)
    if redis:
        for feed in feeds:
            tasks.start(f"{feed.name}-listener", feed.listen)
