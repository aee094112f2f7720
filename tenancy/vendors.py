"""``attach-vendor``: MIGRATION_PLAN 2.2. Records a processor's credentials for a tenant.

The registry stores secret *references* only. Attaching resolves each reference once, so
a typo fails now rather than on the first payment; the values are never kept, printed or
logged. Live credentials are refused outside production, and sandbox ones inside it.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tenancy.errors import (
    DuplicateAttachmentError,
    InvalidRequestError,
    TenantStateError,
)
from tenancy.lifecycle import TenantStatus
from tenancy.registry import get_tenant
from tenancy.secrets import SecretRef, SecretStore

MIN_PRECEDENCE: Final = 1
MAX_PRECEDENCE: Final = 10_000
_ACCOUNT_REF: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,255}")
_INSERT: Final = """
INSERT INTO payments_central.vendor_attachments
       (tenant_id, processor, env, account_ref, api_key_ref, webhook_secret_ref, precedence)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
_LIST: Final = """
SELECT tenant_id, processor, env, account_ref, api_key_ref, webhook_secret_ref, precedence,
       enabled, secrets_destroy_after, secrets_destroyed_at, created_at
  FROM payments_central.vendor_attachments
 WHERE $1::text IS NULL OR tenant_id = $1
 ORDER BY tenant_id, env, precedence
"""


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """The validated arguments of ``attach-vendor``."""

    tenant_id: str
    processor: Processor
    env: VendorEnv
    account_ref: str
    api_key_ref: SecretRef
    webhook_secret_ref: SecretRef | None
    precedence: int

    def __post_init__(self) -> None:
        """Refuse a malformed account reference or precedence before any I/O."""
        if not _ACCOUNT_REF.fullmatch(self.account_ref):
            raise InvalidRequestError(f"invalid account reference {self.account_ref[:80]!r}")
        if not MIN_PRECEDENCE <= self.precedence <= MAX_PRECEDENCE:
            raise InvalidRequestError(
                f"precedence must be between {MIN_PRECEDENCE} and {MAX_PRECEDENCE}"
                f" (lower wins), got {self.precedence}"
            )


@dataclass(frozen=True, slots=True)
class VendorAttachment:
    """A processor attached to a tenant."""

    tenant_id: str
    processor: Processor
    env: VendorEnv
    account_ref: str
    api_key_ref: SecretRef
    webhook_secret_ref: SecretRef | None
    precedence: int
    enabled: bool
    secrets_destroy_after: datetime | None
    secrets_destroyed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "VendorAttachment":
        """Build from a row of ``vendor_attachments``."""
        webhook = row["webhook_secret_ref"]
        return cls(
            tenant_id=row["tenant_id"],
            processor=Processor(row["processor"]),
            env=VendorEnv(row["env"]),
            account_ref=row["account_ref"],
            api_key_ref=SecretRef.parse(row["api_key_ref"]),
            webhook_secret_ref=None if webhook is None else SecretRef.parse(webhook),
            precedence=row["precedence"],
            enabled=row["enabled"],
            secrets_destroy_after=row["secrets_destroy_after"],
            secrets_destroyed_at=row["secrets_destroyed_at"],
        )

    def secret_refs(self) -> tuple[SecretRef, ...]:
        """Every secret this attachment points at."""
        refs = (self.api_key_ref, self.webhook_secret_ref)
        return tuple(ref for ref in refs if ref is not None)


def check_vendor_env(env: VendorEnv, *, production: bool) -> None:
    """Live credentials only in production; sandbox credentials only outside it."""
    if production and env is VendorEnv.SANDBOX:
        raise InvalidRequestError("sandbox vendor credentials are refused in production")
    if not production and env is VendorEnv.PRODUCTION:
        raise InvalidRequestError("live vendor credentials are refused outside production")


async def attach_vendor(
    db: Database, secrets: SecretStore, request: AttachRequest, *, production: bool
) -> VendorAttachment:
    """Check the tenant and the secrets, then record the attachment."""
    check_vendor_env(request.env, production=production)
    async with db.connection() as conn:
        tenant = await get_tenant(conn, request.tenant_id)
    if tenant.status not in {TenantStatus.ACTIVE, TenantStatus.DELETION_PAUSED}:
        raise TenantStateError(f"tenant {request.tenant_id} is {tenant.status}")
    for ref in (request.api_key_ref, request.webhook_secret_ref):
        if ref is not None:
            await secrets.access(ref)
    try:
        async with db.connection() as conn:
            await conn.execute(
                _INSERT,
                request.tenant_id,
                request.processor.value,
                request.env.value,
                request.account_ref,
                str(request.api_key_ref),
                None if request.webhook_secret_ref is None else str(request.webhook_secret_ref),
                request.precedence,
            )
    except asyncpg.UniqueViolationError as exc:
        what = (
            f"precedence {request.precedence} is already used by another {request.env} vendor"
            if exc.constraint_name == "vendor_attachments_precedence"
            else f"{request.processor} ({request.env}) is already attached"
        )
        raise DuplicateAttachmentError(f"tenant {request.tenant_id}: {what}") from exc
    attachments = await list_attachments(db, request.tenant_id)
    return next(a for a in attachments if a.processor is request.processor and a.env is request.env)


async def list_attachments(db: Database, tenant_id: str | None = None) -> list[VendorAttachment]:
    """A tenant's attachments (every tenant's when None), by environment then precedence."""
    async with db.connection() as conn:
        rows = await conn.fetch(_LIST, tenant_id)
    return [VendorAttachment.from_row(row) for row in rows]
