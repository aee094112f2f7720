"""Which processors a tenant has, and the adapter for each: routing's inputs.

The tenant's vendor attachments (central registry, read as the service's own role) are
cached briefly: routing runs for every authorization, and attachments change rarely.
Each attachment is turned into an adapter by the ``PortFactory`` the composition root
supplies (real vendor adapters, or fakes in tests and dev).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from processors.port import PaymentPort
from processors.routing import RouteOption
from schemas.clock import Clock
from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tenancy.vendors import VendorAttachment, list_attachments

ATTACHMENTS_TTL: Final = timedelta(seconds=30)

PortFactory = Callable[[VendorAttachment], PaymentPort]
"""Builds the adapter for one attachment (its credentials are resolved per call)."""


class NotAttachedError(LookupError):
    """The tenant has no enabled attachment for that processor in this environment."""


@dataclass(frozen=True, slots=True)
class BoundPort:
    """An adapter and the tenant's account at that processor."""

    port: PaymentPort
    account: str


class TenantPorts:
    """The adapters of each tenant's attached processors, for this deployment's vendor env."""

    def __init__(self, db: Database, factory: PortFactory, env: VendorEnv, clock: Clock) -> None:
        """Read attachments through ``db`` and build adapters with ``factory``."""
        self._db = db
        self._factory = factory
        self._env = env
        self._clock = clock
        self._cache: dict[
            str, tuple[datetime, dict[Processor, tuple[VendorAttachment, PaymentPort]]]
        ] = {}

    async def _attached(
        self, tenant_id: str
    ) -> dict[Processor, tuple[VendorAttachment, PaymentPort]]:
        now = self._clock()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached[0] < ATTACHMENTS_TTL:
            return cached[1]
        attachments = await list_attachments(self._db, tenant_id)
        ports = {
            a.processor: (a, self._factory(a))
            for a in attachments
            if a.env is self._env and a.enabled and a.secrets_destroyed_at is None
        }
        self._cache[tenant_id] = (now, ports)
        return ports

    async def options(self, tenant_id: str) -> list[RouteOption]:
        """The tenant's processors as routing sees them."""
        attached = await self._attached(tenant_id)
        return [
            RouteOption(
                processor=processor,
                precedence=attachment.precedence,
                capabilities=port.capabilities,
                enabled=attachment.enabled,
            )
            for processor, (attachment, port) in attached.items()
        ]

    async def bound(self, tenant_id: str, processor: Processor) -> BoundPort:
        """The adapter for ``processor`` and the tenant's account there."""
        attached = await self._attached(tenant_id)
        if processor not in attached:
            raise NotAttachedError(f"tenant {tenant_id} has no enabled {processor} attachment")
        attachment, port = attached[processor]
        return BoundPort(port, attachment.account_ref)

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop cached attachments (of one tenant, or all)."""
        if tenant_id is None:
            self._cache.clear()
        else:
            self._cache.pop(tenant_id, None)
