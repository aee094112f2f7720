"""Builds the real processor adapters, one per tenant attachment, for the vendor mode.

Credentials are resolved through the secret store on each use (the store caches them for
five minutes), so a rotated key takes effect without a restart and no value is kept on
the adapter. A Stripe key is checked against the mode (test keys outside prod only).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from gateway.vendor_mode import VendorMode, base_url, check_stripe_key
from handlers.hesabpay_store import PostgresCheckoutSessions, PostgresReplayStore
from handlers.ports import PortFactory
from processors.hesabpay import HesabPayAdapter
from processors.hesabpay_sessions import (
    CheckoutSessions,
    InMemoryCheckoutSessions,
    InMemoryReplayStore,
    ReplayStore,
)
from processors.paypal import PayPalAdapter
from processors.port import CredentialSource, PaymentPort, VendorCredentials
from processors.stripe import StripeAdapter
from schemas.clock import Clock
from schemas.processors import Processor
from tenancy.db import Database
from tenancy.secrets import SecretStore
from tenancy.vendors import VendorAttachment


def credential_source(
    secrets: SecretStore, attachment: VendorAttachment, mode: VendorMode
) -> CredentialSource:
    """Resolves the attachment's secret references when the adapter asks."""

    async def resolve() -> VendorCredentials:
        api_key = await secrets.access(attachment.api_key_ref)
        if attachment.processor is Processor.STRIPE:
            check_stripe_key(api_key.get_secret_value(), mode)
        hook = attachment.webhook_secret_ref
        webhook_secret = None if hook is None else await secrets.access(hook)
        return VendorCredentials(api_key, webhook_secret, attachment.account_ref)

    return resolve


@dataclass
class VendorAdapters:
    """The adapters' shared parts, and the factory that makes one per attachment."""

    mode: VendorMode
    secrets: SecretStore
    clock: Clock
    local_urls: Mapping[Processor, str] = field(default_factory=dict)
    checkout_sessions: InMemoryCheckoutSessions = field(default_factory=InMemoryCheckoutSessions)
    replays: InMemoryReplayStore = field(default_factory=InMemoryReplayStore)
    db: Database | None = None
    """When set, HesabPay adapters keep their records in the tenant's schema instead."""
    _stripe: list[StripeAdapter] = field(default_factory=list)
    _built: dict[VendorAttachment, PaymentPort] = field(default_factory=dict)
    _http: httpx.AsyncClient | None = None
    """One connection pool for the PayPal and HesabPay adapters (Stripe has its SDK's)."""

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client, made on first use."""
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    def build(self, attachment: VendorAttachment) -> PaymentPort:
        """The adapter for ``attachment`` in this mode (one per attachment, reused)."""
        built = self._built.get(attachment)
        if built is None:
            built = self._built[attachment] = self._new(attachment)
        return built

    def _new(self, attachment: VendorAttachment) -> PaymentPort:
        credentials = credential_source(self.secrets, attachment, self.mode)
        url = base_url(attachment.processor, self.mode, self.local_urls)
        match attachment.processor:
            case Processor.STRIPE:
                adapter = StripeAdapter(credentials, base_url=url, clock=self.clock)
                self._stripe.append(adapter)
                return adapter
            case Processor.PAYPAL:
                local = self.mode is VendorMode.LOCAL_SANDBOX
                return PayPalAdapter(
                    credentials,
                    base_url=url,
                    clock=self.clock,
                    sandbox_cert_origin=url if local else None,
                    http=self.http,
                )
            case Processor.HESABPAY:
                sessions: CheckoutSessions = self.checkout_sessions
                replays: ReplayStore = self.replays
                if self.db is not None:
                    sessions = PostgresCheckoutSessions(self.db, attachment.tenant_id)
                    replays = PostgresReplayStore(self.db, attachment.tenant_id)
                return HesabPayAdapter(
                    credentials,
                    base_url=url,
                    clock=self.clock,
                    sessions=sessions,
                    replays=replays,
                    http=self.http,
                )

    def factory(self) -> PortFactory:
        """``build`` as the port factory routing uses."""
        return self.build

    async def aclose(self) -> None:
        """Close the adapters' HTTP connections."""
        for adapter in self._stripe:
            await adapter.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
