"""Vendor mode per environment (DEPLOYMENT_TOPOLOGY section 1).

Which endpoints each processor adapter talks to, and which credentials it accepts.

======== ============================================ ===========================
env      processors                                   credentials
======== ============================================ ===========================
dev      our loopback sandboxes (fake Stripe, fake    sandbox (test) only
         PayPal, hesabpay-mock)
staging  the vendors' sandboxes                       sandbox (test) only
prod     the vendors' live endpoints                  live only
======== ============================================ ===========================

In dev the sandbox URLs come from settings (``make run`` starts the sandboxes and sets
them); staging and prod use the vendors' published base URLs, which settings may
override for a regional endpoint.
"""

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from gateway.settings import Environment
from schemas.processors import Processor, VendorEnv


class VendorMode(StrEnum):
    """Where the processor adapters send their requests."""

    LOCAL_SANDBOX = "local_sandbox"
    VENDOR_SANDBOX = "vendor_sandbox"
    LIVE = "live"


MODE_OF: Final[Mapping[Environment, VendorMode]] = MappingProxyType(
    {
        Environment.DEV: VendorMode.LOCAL_SANDBOX,
        Environment.STAGING: VendorMode.VENDOR_SANDBOX,
        Environment.PROD: VendorMode.LIVE,
    }
)

PUBLISHED_URLS: Final[Mapping[tuple[Processor, VendorMode], str]] = MappingProxyType(
    {
        (Processor.STRIPE, VendorMode.VENDOR_SANDBOX): "https://api.stripe.com",
        (Processor.STRIPE, VendorMode.LIVE): "https://api.stripe.com",
        (Processor.PAYPAL, VendorMode.VENDOR_SANDBOX): "https://api-m.sandbox.paypal.com",
        (Processor.PAYPAL, VendorMode.LIVE): "https://api-m.paypal.com",
        (Processor.HESABPAY, VendorMode.VENDOR_SANDBOX): "https://api-sandbox.hesab.com",
        (Processor.HESABPAY, VendorMode.LIVE): "https://api.hesab.com",
    }
)
"""The vendors' own base URLs (Stripe's test and live modes share one host: the key
decides)."""


class VendorModeError(ValueError):
    """A credential or endpoint that does not belong to this environment's vendor mode."""


def vendor_env(mode: VendorMode) -> VendorEnv:
    """Which attachments (credentials) this mode serves."""
    return VendorEnv.PRODUCTION if mode is VendorMode.LIVE else VendorEnv.SANDBOX


def base_url(processor: Processor, mode: VendorMode, local: Mapping[Processor, str]) -> str:
    """The base URL of ``processor`` in ``mode``; ``local`` holds the dev sandboxes' URLs."""
    if mode is VendorMode.LOCAL_SANDBOX:
        url = local.get(processor)
        if url is None:
            raise VendorModeError(
                f"no local sandbox URL for {processor}: set PAYMENTS_SANDBOX_URLS, or run "
                "`payment-gateway sandbox`"
            )
        if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
            raise VendorModeError(f"the {processor} sandbox must be on loopback in dev")
        return url
    return PUBLISHED_URLS[processor, mode]


def check_stripe_key(api_key: str, mode: VendorMode) -> None:
    """A live Stripe key only in prod, a test key only outside it (the key names its mode)."""
    live = api_key.startswith(("sk_live_", "rk_live_"))
    test = api_key.startswith(("sk_test_", "rk_test_"))
    if mode is VendorMode.LIVE and not live:
        raise VendorModeError("a Stripe test key is refused in production")
    if mode is not VendorMode.LIVE and not test:
        raise VendorModeError("only Stripe test keys are accepted outside production")
