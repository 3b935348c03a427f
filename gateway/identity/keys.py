"""Virtual keys and teams in the database: create, update, rotate, revoke; secrets are stored as sha256 only."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import union
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from gateway.errors import InvalidRequest, NotFound
from gateway.schemas.admin import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate
from gateway.storage.db import Database, read_rows_blocking
from gateway.storage.tables import ApiKey, KeyPrefix, Team
from gateway.usage.pricing import nanos

KEY_PREFIX = "sk-gw-"
VISIBLE_CHARS = 12  # "sk-gw-" and six random characters: enough to tell keys apart, useless to an attacker
# A new secret whose prefix some key already had is drawn again, so a prefix names one key forever; at 36 random
# bits a second draw is already rare.
PREFIX_DRAWS = 5


def hash_key(secret: str) -> str:
    """Keys carry 190 bits of randomness, so a fast unsalted hash is safe and keeps lookups O(1)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_key_names(database_url: str) -> frozenset[str]:
    """Every key id and every prefix any key has had, read from a database without migrating it (for `gateway
    policy check --config`); raises MigrationError."""
    rows = read_rows_blocking(database_url, union(select(ApiKey.id), select(KeyPrefix.prefix)))  # type: ignore[arg-type]
    return frozenset(str(row[0]) for row in rows)


def now() -> datetime:
    return datetime.now(UTC)


class KeyService:
    """The only writer of teams, api_keys and key_prefixes."""

    def __init__(self, db: Database, *, make_secret: Callable[[], str] = new_secret) -> None:
        self.db = db
        self.make_secret = make_secret

    async def create_team(self, spec: TeamCreate) -> Team:
        team = Team(
            id="team_" + secrets.token_hex(8),
            name=spec.name,
            budget_nanos=nanos(spec.budget) if spec.budget is not None else None,
            budget_period=spec.period,
            rpm=spec.rpm,
            tpm=spec.tpm,
            allowed_models=list(spec.models) if spec.models is not None else None,
            metadata_=dict(spec.metadata),
        )
        async with self.db.session() as session:
            session.add(team)
            try:
                await session.commit()
            except IntegrityError:
                raise InvalidRequest(f"A team named {spec.name!r} already exists.", param="name") from None
        return team

    async def list_teams(self) -> Sequence[Team]:
        async with self.db.session() as session:
            return (await session.exec(select(Team).order_by(col(Team.name)))).all()

    async def get_team(self, ref: str) -> Team:
        """A team by id or by name. Raises NotFound."""
        async with self.db.session() as session:
            team = await session.get(Team, ref)
            if team is None:
                team = (await session.exec(select(Team).where(Team.name == ref))).first()
        if team is None:
            raise NotFound(f"No team {ref!r}.", code="team_not_found")
        return team

    async def update_team(self, ref: str, spec: TeamUpdate) -> Team:
        team = await self.get_team(ref)
        apply_limits(team, spec)
        async with self.db.session() as session:
            session.add(team)
            await session.commit()
        return team

    async def create_key(self, spec: KeyCreate) -> tuple[ApiKey, str]:
        """Returns the stored key and its secret, which is never retrievable again."""
        team_id = (await self.get_team(spec.team)).id if spec.team else None
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=spec.name,
            key_hash="",
            prefix="",
            team_id=team_id,
            role=spec.role,
            allowed_models=list(spec.models) if spec.models is not None else None,
            budget_nanos=nanos(spec.budget) if spec.budget is not None else None,
            budget_period=spec.period,
            rpm=spec.rpm,
            tpm=spec.tpm,
            expires_at=spec.expires_at,
            metadata_=dict(spec.metadata),
        )
        return key, await self._save_with_new_secret(key)

    async def list_keys(self, *, team: str | None = None, include_revoked: bool = False) -> Sequence[ApiKey]:
        query = select(ApiKey).order_by(col(ApiKey.created_at))
        if team:
            query = query.where(ApiKey.team_id == (await self.get_team(team)).id)
        if not include_revoked:
            query = query.where(col(ApiKey.revoked_at).is_(None))
        async with self.db.session() as session:
            return (await session.exec(query)).all()

    async def get_key(self, ref: str) -> ApiKey:
        """A key by id or by a visible prefix it has had (a prefix names one key forever). Raises NotFound."""
        async with self.db.session() as session:
            key = await session.get(ApiKey, ref)
            if key is None:
                named = await session.get(KeyPrefix, ref)
                key = await session.get(ApiKey, named.key_id) if named is not None else None
            if key is None:  # a row written without its prefix record (by hand, or by a tool of its own)
                key = (await session.exec(select(ApiKey).where(ApiKey.prefix == ref))).first()
        if key is None:
            raise NotFound(f"No key {ref!r}.", code="key_not_found")
        return key

    async def update_key(self, ref: str, spec: KeyUpdate) -> ApiKey:
        key = await self.get_key(ref)
        if key.revoked_at is not None:
            raise InvalidRequest(f"Key {key.prefix} is revoked; create a new one.", param="key")
        fields = spec.model_fields_set
        if "team" in fields:
            key.team_id = (await self.get_team(spec.team)).id if spec.team else None
        if "role" in fields and spec.role is not None:
            key.role = spec.role
        if "name" in fields and spec.name is not None:
            key.name = spec.name
        if "expires_at" in fields:
            key.expires_at = spec.expires_at
        apply_limits(key, spec)
        return await self._save(key)

    async def rotate_key(self, ref: str) -> tuple[ApiKey, str]:
        """A new secret for the same key (same id, budgets and usage); the old secret stops working."""
        key = await self.get_key(ref)
        if key.revoked_at is not None:
            raise InvalidRequest(f"Key {key.prefix} is revoked; create a new one.", param="key")
        key.updated_at = now()
        return key, await self._save_with_new_secret(key)

    async def revoke_key(self, ref: str) -> tuple[ApiKey, bool]:
        """Revokes the key; the bool says whether this call revoked it (False: it already was, nothing changed)."""
        key = await self.get_key(ref)
        if key.revoked_at is not None:
            return key, False
        key.revoked_at = now()
        return await self._save(key), True

    async def _save_with_new_secret(self, key: ApiKey) -> str:
        """Gives the key a new secret whose prefix no key has had, and records that prefix in key_prefixes (the key's
        former ones stay there); returns the secret. (Two instances drawing the same unused prefix in the same
        moment would fail on key_prefixes' primary key: a 500, at odds of 2^-36 per pair of writes.)"""
        async with self.db.session() as session:
            for _ in range(PREFIX_DRAWS):
                secret = self.make_secret()
                if await session.get(KeyPrefix, secret[:VISIBLE_CHARS]) is None:
                    break
            else:
                raise RuntimeError(f"no unused key prefix in {PREFIX_DRAWS} draws")
            key.key_hash, key.prefix = hash_key(secret), secret[:VISIBLE_CHARS]
            session.add(key)
            session.add(KeyPrefix(prefix=key.prefix, key_id=key.id))
            await session.commit()
        return secret

    async def _save(self, key: ApiKey) -> ApiKey:
        key.updated_at = now()
        async with self.db.session() as session:
            session.add(key)
            await session.commit()
        return key


def apply_limits(row: ApiKey | Team, spec: KeyUpdate | TeamUpdate) -> None:
    """Copies the limit fields a PATCH named (null clears a limit) onto a key or team row."""
    fields = spec.model_fields_set
    if "budget" in fields:
        row.budget_nanos = nanos(spec.budget) if spec.budget is not None else None
    if "period" in fields and spec.period is not None:
        row.budget_period = spec.period
    if "rpm" in fields:
        row.rpm = spec.rpm
    if "tpm" in fields:
        row.tpm = spec.tpm
    if "models" in fields:
        row.allowed_models = list(spec.models) if spec.models is not None else None
    if "metadata" in fields and spec.metadata is not None:
        row.metadata_ = dict(spec.metadata)
    row.updated_at = now()
