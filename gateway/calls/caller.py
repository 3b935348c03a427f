"""The caller: who is calling (Principal), and what their key grants (KeyEntry: models, budgets, rate limits).

Pure data shared by every layer; the identity package builds it, the limits package enforces its scopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["admin", "member", "approver", "viewer"]
Period = Literal["daily", "weekly", "monthly", "total"]


@dataclass(frozen=True, slots=True)
class BudgetScope:
    name: str  # "key:<id>" or "team:<id>"
    limit: int  # nano-dollars
    period: Period


@dataclass(frozen=True, slots=True)
class RateScope:
    name: str  # "key:<id>" or "team:<id>"
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What the hot path needs of a key, with its team's limits folded in."""

    id: str
    name: str
    prefix: str
    role: str
    team_id: str | None
    team_name: str | None
    allowed_models: frozenset[str] | None  # key and team lists intersected; None = every model
    budgets: tuple[BudgetScope, ...]
    rates: tuple[RateScope, ...]
    expires_at: float | None  # POSIX seconds
    revoked: bool
    # What a policy's applies_to.keys may name this key by: its id and every prefix it has had (rotation adds one).
    aliases: frozenset[str] = frozenset()
    counts_tokens: bool = field(init=False)  # some scope has a tpm: prompts are counted before the call

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts_tokens", any(rate.tpm for rate in self.rates))
        object.__setattr__(self, "aliases", self.aliases | {self.id, self.prefix})

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: the master key (admin) or, later, a virtual key with its team and role."""

    key_id: str | None
    name: str
    role: str
    team_id: str | None = None
    key: KeyEntry | None = None  # None for the master key, which has no limits
