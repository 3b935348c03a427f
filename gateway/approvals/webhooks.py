"""Signed webhooks on approval events, delivered off the request path with retries.

Each delivery is a POST of JSON `{"id", "type", "created_at", "data": <approval>}` with the header
`x-gateway-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret>`.
Receivers recompute the HMAC over the raw body and reject stale timestamps (replays). A receiver that
answers 2xx has the event; anything else is retried with exponential backoff up to max_attempts.
Deliveries are best effort across restarts: the audit log, not the webhook, is the record.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import orjson

from gateway.approvals.config import WebhookConfig
from gateway.approvals.views import approval_json
from gateway.storage.tables import ApprovalRequest

log = logging.getLogger("gateway.approvals")
SIGNATURE_HEADER = "x-gateway-signature"
MAX_QUEUED = 10_000


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does (and our tests do): the signature matches and is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


class Notifier(Protocol):
    def send(self, event: str, row: ApprovalRequest) -> None: ...


class WebhookNotifier:
    """Queues events and delivers them in a background task; send() never waits and never raises."""

    def __init__(
        self, webhooks: tuple[WebhookConfig, ...], session: Callable[[], aiohttp.ClientSession], *,
        backoff_s: float = 0.5,
    ) -> None:  # fmt: skip
        self.webhooks = webhooks
        self.session = session
        self.backoff_s = backoff_s
        self.queue: asyncio.Queue[tuple[WebhookConfig, bytes]] = asyncio.Queue(MAX_QUEUED)
        self.delivered = 0
        self.failed = 0

    def send(self, event: str, row: ApprovalRequest) -> None:
        targets = [hook for hook in self.webhooks if event in hook.events]
        if not targets:
            return
        body = orjson.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": event,
                "created_at": datetime.now(UTC).isoformat(),
                "data": approval_json(row),
            }  # fmt: skip
        )
        for hook in targets:
            try:
                self.queue.put_nowait((hook, body))
            except asyncio.QueueFull:
                self.failed += 1
                log.error("webhook queue full; dropped %s for %s", event, hook.url)

    async def run(self) -> None:
        """Background loop: one delivery at a time per process, each with its own retries."""
        while True:
            hook, body = await self.queue.get()
            try:
                await self.deliver(hook, body)
            finally:
                self.queue.task_done()

    async def deliver(self, hook: WebhookConfig, body: bytes) -> bool:
        secret = hook.secret.get_secret_value()
        for attempt in range(hook.max_attempts):
            headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, int(time.time()), body)}
            try:
                timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
                async with self.session().post(hook.url, data=body, headers=headers, timeout=timeout) as response:
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return True
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s attempt %d/%d failed: %s", hook.url, attempt + 1, hook.max_attempts, problem)
            if attempt + 1 < hook.max_attempts:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
        return False
