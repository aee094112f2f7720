"""Tenant lifecycle: the registry statuses and what each one allows.

provisioning ─▶ active ◀──▶ deletion_paused
                  │  ▲            │
                  ▼  │ (cancel)   ▼
               soft_deleted ◀─────┘
                  │  ▲ (open payments found: refused)
                  ▼  │
               offboarding   (after 30 days, offboard-tenant; a crash resumes here)
                  │ (snapshot, drop)
                  ▼
               archived

``offboarding`` is not a serving status: no tenant transaction may start, so nothing
writes to the schema between its snapshot and its drop.
"""

from datetime import timedelta
from enum import StrEnum
from typing import Final


class TenantStatus(StrEnum):
    """A tenant's place in its lifecycle; matches the registry's CHECK constraint."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    DELETION_PAUSED = "deletion_paused"
    SOFT_DELETED = "soft_deleted"
    OFFBOARDING = "offboarding"
    ARCHIVED = "archived"


class Operation(StrEnum):
    """What a command or webhook asks of a tenant, for the lifecycle policy."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    CANCEL = "cancel"
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"


SOFT_DELETE_WINDOW: Final = timedelta(days=30)
INBOX_RETENTION_AFTER_OFFBOARDING: Final = timedelta(days=90)
SECRET_DESTRUCTION_GRACE: Final = timedelta(hours=24)

SERVING_STATUSES: Final = frozenset(
    {TenantStatus.ACTIVE, TenantStatus.DELETION_PAUSED, TenantStatus.SOFT_DELETED}
)
"""Statuses in which the tenant's schema exists and its transactions may run."""

_SOFT_DELETED_ALLOWS: Final = frozenset(
    {Operation.VOID, Operation.REFUND, Operation.CANCEL, Operation.WEBHOOK, Operation.RECONCILE}
)


def allows(status: TenantStatus, operation: Operation) -> bool:
    """Whether a tenant in ``status`` may have ``operation`` applied.

    During the soft-delete window no new money moves in (no authorize, no capture);
    refunds, voids, compensation, webhook ingestion and reconciliation continue.
    """
    if status in {TenantStatus.ACTIVE, TenantStatus.DELETION_PAUSED}:
        return True
    if status is TenantStatus.SOFT_DELETED:
        return operation in _SOFT_DELETED_ALLOWS
    return False
