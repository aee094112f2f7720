"""What each tenant status allows."""

import pytest

from tenancy.lifecycle import SERVING_STATUSES, Operation, TenantStatus, allows


@pytest.mark.parametrize("operation", list(Operation))
def test_active_tenants_allow_everything(operation: Operation) -> None:
    """Active and deletion-paused tenants run every operation."""
    assert allows(TenantStatus.ACTIVE, operation)
    assert allows(TenantStatus.DELETION_PAUSED, operation)


def test_soft_deleted_tenants_take_no_new_money() -> None:
    """In the soft-delete window authorize and capture are refused, the rest continues."""
    refused = {op for op in Operation if not allows(TenantStatus.SOFT_DELETED, op)}
    assert refused == {Operation.AUTHORIZE, Operation.CAPTURE}


@pytest.mark.parametrize(
    "status", [TenantStatus.PROVISIONING, TenantStatus.OFFBOARDING, TenantStatus.ARCHIVED]
)
def test_unserved_statuses_allow_nothing(status: TenantStatus) -> None:
    """A tenant still provisioning, being offboarded, or archived allows no operation at all."""
    assert not any(allows(status, op) for op in Operation)
    assert status not in SERVING_STATUSES
