"""The auth stage: who is calling, from the `Authorization: Bearer` header, answered from memory."""

from __future__ import annotations

import hmac

from gateway.errors import AuthenticationFailed
from gateway.pipeline.context import CallContext, Principal
from gateway.pipeline.hooks import BaseHook

MASTER = Principal(key_id=None, name="master", role="admin")


class Authenticator:
    """Checks bearer tokens against the master key (virtual keys join here)."""

    def __init__(self, master_key: str | None) -> None:
        self._master = master_key.encode() if master_key else None

    def authenticate(self, authorization: str | None) -> Principal:
        """Raises AuthenticationFailed (401) for a missing, malformed or unknown key."""
        if not authorization:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Malformed Authorization header; expected 'Bearer YOUR_KEY'.")
        if self._master is not None and hmac.compare_digest(token.encode(), self._master):
            return MASTER
        raise AuthenticationFailed(f"Incorrect API key provided: {redact(token)}.")


def redact(token: str) -> str:
    return token[:6] + "…" + token[-4:] if len(token) > 12 else "…"


class AuthHook(BaseHook):
    name = "auth"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def before_request(self, ctx: CallContext) -> None:
        ctx.principal = self.authenticator.authenticate(ctx.authorization)
