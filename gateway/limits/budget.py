"""The budget stage: reserve the worst-case cost before the call, settle the real cost after, release on failure.

The refusal rule lives in the counters, once: `spent + reserved + this reservation > budget` refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.calls.context import CallContext
from gateway.errors import BudgetExceeded, GatewayError
from gateway.limits.counters import BudgetRefusal, Counters
from gateway.pipeline.hooks import BaseHook
from gateway.providers.base import Reply
from gateway.usage.pricing import PriceTable, usd


class BudgetHook(BaseHook):
    name = "budget"

    def __init__(self, counters: Counters, prices: PriceTable) -> None:
        self.counters = counters
        self.prices = prices

    def worst_case(self, ctx: CallContext) -> int:
        """The dearest deployment of the route, at the full prompt and the largest possible output."""
        requested = ctx.body.get("max_completion_tokens") or ctx.body.get("max_tokens")
        n = ctx.body.get("n") or 1
        worst = 0
        for deployment in ctx.route:
            if ctx.operation == "embeddings":
                output = 0
            elif isinstance(requested, int):
                output = requested
            else:
                output = self.prices.output_cap(deployment.config)
            output *= n if isinstance(n, int) else 1
            worst = max(worst, self.prices.estimate(deployment.config, ctx.prompt_tokens or 0, output))
        return worst

    async def before_request(self, ctx: CallContext) -> None:
        key = ctx.principal.key if ctx.principal else None
        if key is None or not key.budgets:
            return
        # Set before the round trip: a call cancelled while the store answers may already hold a reservation, and
        # on_error must release it (releasing a hold that was never booked books nothing).
        ctx.reserved = True
        refusal = await self.counters.reserve(ctx.request_id, key.budgets, self.worst_case(ctx), now=datetime.now(UTC))
        if refusal is not None:
            ctx.reserved = False
            raise BudgetExceeded(refusal_message(refusal))

    async def after_response(self, ctx: CallContext, reply: Reply | None) -> None:
        if ctx.reserved:
            await self.counters.settle(ctx.request_id, ctx.cost_nanos, now=datetime.now(UTC))
            ctx.reserved = False

    async def on_error(self, ctx: CallContext, error: GatewayError) -> None:
        if not ctx.reserved:
            return
        ctx.reserved = False
        if ctx.cost_nanos:  # a stream that broke off was still billed for what it sent
            await self.counters.settle(ctx.request_id, ctx.cost_nanos, now=datetime.now(UTC))
        else:
            await self.counters.release(ctx.request_id)


def refusal_message(refusal: BudgetRefusal) -> str:
    kind, _, ident = refusal.scope.name.partition(":")
    return (
        f"Budget exceeded for {kind} {ident}: ${usd(refusal.spent):.6f} spent and ${usd(refusal.reserved):.6f} "
        f"reserved of ${usd(refusal.scope.limit):.6f} ({refusal.scope.period}); this request may cost up to "
        f"${usd(refusal.amount):.6f}. Lower max_tokens, or raise the budget."
    )
