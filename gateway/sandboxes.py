"""The three vendor sandboxes on loopback, with the demo tenant's credentials.

``make run`` starts them in-process; ``payment-gateway sandbox`` runs them alone until
Ctrl-C. The demo credentials are sandbox values, not secrets of any real account.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Final

from sandbox.hesabpay_mock import HesabPayMock
from sandbox.paypal_api import PayPalSandbox
from sandbox.stripe_api import FakeStripe
from schemas.processors import Processor

DEMO_STRIPE_KEY: Final = "sk_test_demo_gateway"
DEMO_STRIPE_WEBHOOK_SECRET: Final = "whsec_demo_gateway"  # noqa: S105 (sandbox-only)
DEMO_PAYPAL_CLIENT: Final = "demo_client"
DEMO_PAYPAL_SECRET: Final = "demo_paypal_secret"  # noqa: S105 (sandbox-only)
DEMO_PAYPAL_WEBHOOK_ID: Final = "WH-DEMO-GATEWAY"
DEMO_HESABPAY_MERCHANT: Final = "demo_hesabpay"
DEMO_HESABPAY_KEY: Final = "demo_hesabpay_api_key"


@dataclass(frozen=True)
class DemoCredentials:
    """What the demo tenant's attachments point at, per processor."""

    api_key: str
    webhook_secret: str | None
    account: str


DEMO_CREDENTIALS: Final = {
    Processor.STRIPE: DemoCredentials(DEMO_STRIPE_KEY, DEMO_STRIPE_WEBHOOK_SECRET, "demo_stripe"),
    Processor.PAYPAL: DemoCredentials(
        f"{DEMO_PAYPAL_CLIENT}:{DEMO_PAYPAL_SECRET}", DEMO_PAYPAL_WEBHOOK_ID, "demo_paypal"
    ),
    Processor.HESABPAY: DemoCredentials(DEMO_HESABPAY_KEY, None, DEMO_HESABPAY_MERCHANT),
}


@dataclass(frozen=True)
class Sandboxes:
    """The running sandboxes."""

    stripe: FakeStripe
    paypal: PayPalSandbox
    hesabpay: HesabPayMock

    def deliver_to(self, api_url: str, tenant_id: str) -> None:
        """Send every sandbox's webhooks to payment-api at ``api_url``, for ``tenant_id``."""
        hooks = f"{api_url}/webhooks"
        self.stripe.configure_webhooks(f"{hooks}/stripe/{tenant_id}", DEMO_STRIPE_WEBHOOK_SECRET)
        self.paypal.register_webhook(f"{hooks}/paypal/{tenant_id}", DEMO_PAYPAL_WEBHOOK_ID)
        self.hesabpay.state.add_account(
            DEMO_HESABPAY_MERCHANT, DEMO_HESABPAY_KEY, f"{hooks}/hesabpay/{tenant_id}"
        )

    def urls(self) -> dict[Processor, str]:
        """Each sandbox's base URL, by processor."""
        return {
            Processor.STRIPE: self.stripe.url,
            Processor.PAYPAL: self.paypal.url,
            Processor.HESABPAY: self.hesabpay.url,
        }


@contextmanager
def running_sandboxes() -> Iterator[Sandboxes]:
    """Start the three sandboxes with the demo credentials; stop them on exit."""
    with ExitStack() as stack:
        stripe = stack.enter_context(
            FakeStripe(api_keys=(DEMO_STRIPE_KEY,), webhook_secret=DEMO_STRIPE_WEBHOOK_SECRET)
        )
        paypal = stack.enter_context(
            PayPalSandbox(clients={DEMO_PAYPAL_CLIENT: DEMO_PAYPAL_SECRET})
        )
        hesabpay = stack.enter_context(HesabPayMock())
        hesabpay.state.add_account(DEMO_HESABPAY_MERCHANT, DEMO_HESABPAY_KEY, None)
        yield Sandboxes(stripe, paypal, hesabpay)
