"""Vendor mode per environment: endpoints and the credentials each environment accepts."""

import pytest

from gateway.settings import Environment
from gateway.vendor_mode import (
    MODE_OF,
    VendorMode,
    VendorModeError,
    base_url,
    check_stripe_key,
    vendor_env,
)
from schemas.processors import Processor, VendorEnv

LOCAL = {Processor.STRIPE: "http://127.0.0.1:41001", Processor.PAYPAL: "http://127.0.0.1:41002"}


def test_each_environment_has_its_mode() -> None:
    """Dev runs on local sandboxes, staging on the vendors' sandboxes, prod live."""
    assert MODE_OF[Environment.DEV] is VendorMode.LOCAL_SANDBOX
    assert MODE_OF[Environment.STAGING] is VendorMode.VENDOR_SANDBOX
    assert MODE_OF[Environment.PROD] is VendorMode.LIVE
    assert vendor_env(VendorMode.LIVE) is VendorEnv.PRODUCTION
    assert vendor_env(VendorMode.VENDOR_SANDBOX) is VendorEnv.SANDBOX


def test_base_urls_follow_the_mode() -> None:
    """Local sandboxes come from settings; the vendors' hosts are fixed per mode."""
    assert base_url(Processor.STRIPE, VendorMode.LOCAL_SANDBOX, LOCAL) == LOCAL[Processor.STRIPE]
    sandbox = base_url(Processor.PAYPAL, VendorMode.VENDOR_SANDBOX, {})
    assert sandbox == "https://api-m.sandbox.paypal.com"
    assert base_url(Processor.HESABPAY, VendorMode.LIVE, {}) == "https://api.hesab.com"


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ({}, "no local sandbox URL"),
        ({Processor.HESABPAY: "https://api.hesab.com"}, "loopback"),
    ],
)
def test_dev_refuses_a_missing_or_remote_sandbox(local: dict[Processor, str], message: str) -> None:
    """In dev a processor without a loopback sandbox URL is a configuration error."""
    with pytest.raises(VendorModeError, match=message):
        base_url(Processor.HESABPAY, VendorMode.LOCAL_SANDBOX, local)


@pytest.mark.parametrize(
    ("key", "mode", "ok"),
    [
        ("sk_test_abc", VendorMode.LOCAL_SANDBOX, True),
        ("sk_test_abc", VendorMode.VENDOR_SANDBOX, True),
        ("sk_live_abc", VendorMode.VENDOR_SANDBOX, False),
        ("sk_live_abc", VendorMode.LIVE, True),
        ("sk_test_abc", VendorMode.LIVE, False),
        ("pk_test_abc", VendorMode.LOCAL_SANDBOX, False),
    ],
)
def test_stripe_keys_must_match_the_mode(key: str, mode: VendorMode, ok: bool) -> None:  # noqa: FBT001 (a parametrized expectation)
    """A live key only in prod, a test key only outside it; publishable keys never."""
    if ok:
        check_stripe_key(key, mode)
    else:
        with pytest.raises(VendorModeError):
            check_stripe_key(key, mode)
