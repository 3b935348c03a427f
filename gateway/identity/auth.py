"""The auth stage: who is calling, from the `Authorization: Bearer` header, answered from memory."""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime

from gateway.calls.caller import Principal
from gateway.calls.context import CallContext
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.identity.keycache import KeyCache
from gateway.identity.keys import hash_key
from gateway.pipeline.hooks import BaseHook

MASTER = Principal(key_id=None, name="master", role="admin")
CACHE_SIZE = 4096


class Authenticator:
    """Checks bearer tokens against the master key and the virtual-key cache; no database on this path."""

    def __init__(self, master_key: str | None, keys: KeyCache | None = None) -> None:
        self._master = master_key.encode() if master_key else None
        self.keys = keys
        # Per-request work done once per key: the token's hash, and the Principal built from the cached entry
        # (rebuilt when the cache holds a new entry for the hash: a reload, a revocation). Bounded: cleared when full.
        self._hashes: dict[str, str] = {}
        self._principals: dict[str, Principal] = {}

    def authenticate(self, authorization: str | None) -> Principal:
        """Raises AuthenticationFailed (401) for a missing, malformed, unknown, revoked or expired key."""
        if not authorization:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Malformed Authorization header; expected 'Bearer YOUR_KEY'.")
        if self._master is not None and hmac.compare_digest(token.encode(), self._master):
            return MASTER
        key_hash = self._hashes.get(token)
        known = key_hash is not None
        if key_hash is None:
            key_hash = hash_key(token)
        entry = self.keys.get(key_hash) if self.keys is not None else None
        if entry is None:
            raise AuthenticationFailed(f"Incorrect API key provided: {redact(token)}.")
        if not known:  # only tokens of real keys are remembered
            if len(self._hashes) >= CACHE_SIZE:
                self._hashes.clear()
            self._hashes[token] = key_hash
        if entry.revoked:
            raise AuthenticationFailed(f"The API key {entry.prefix}… was revoked.", code="key_revoked")
        if entry.expires_at is not None and time.time() >= entry.expires_at:
            when = datetime.fromtimestamp(entry.expires_at, UTC).isoformat()
            raise AuthenticationFailed(f"The API key {entry.prefix}… expired at {when}.", code="key_expired")
        principal = self._principals.get(key_hash)
        if principal is None or principal.key is not entry:
            if len(self._principals) >= CACHE_SIZE:
                self._principals.clear()
            principal = Principal(key_id=entry.id, name=entry.name, role=entry.role, team_id=entry.team_id, key=entry)
            self._principals[key_hash] = principal
        return principal


def require_role(principal: Principal, *roles: str) -> None:
    """Raises PermissionDenied (403) unless the caller has one of the roles."""
    if principal.role not in roles:
        raise PermissionDenied(
            f"This key has role {principal.role!r}; this endpoint needs {' or '.join(repr(r) for r in roles)}.",
            code="insufficient_role",
        )


def redact(token: str) -> str:
    return token[:6] + "…" + token[-4:] if len(token) > 12 else "…"


class AuthHook(BaseHook):
    name = "auth"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def before_request(self, ctx: CallContext) -> None:
        ctx.principal = self.authenticator.authenticate(ctx.authorization)
        if ctx.principal.role == "viewer":
            raise PermissionDenied(
                "Keys with role 'viewer' may read usage but not call models.", code="insufficient_role"
            )
