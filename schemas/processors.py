"""The payment processors the gateway can route to, and the vendor environments."""

from enum import StrEnum


class Processor(StrEnum):
    """A payment processor; the values match the CHECK constraints in the migrations."""

    STRIPE = "stripe"
    PAYPAL = "paypal"
    HESABPAY = "hesabpay"


class VendorEnv(StrEnum):
    """Which of a vendor's environments a credential belongs to."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"
