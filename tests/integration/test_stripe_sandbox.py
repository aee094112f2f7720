"""The fake Stripe's own surface: its admin endpoints over HTTP, and Stripe's auth rules."""

from collections.abc import Iterator

import httpx
import pytest

from sandbox.stripe_api import FakeStripe

KEY = "sk_test_sandbox_admin_3f1c"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    """A fake Stripe for this module."""
    with FakeStripe(api_keys=(KEY,)) as sandbox:
        yield sandbox


@pytest.fixture
def client(fake: FakeStripe) -> Iterator[httpx.Client]:
    """A plain HTTP client on the fake, authenticated with basic auth as curl does it."""
    with httpx.Client(base_url=fake.url, auth=(KEY, ""), timeout=5) as http:
        yield http
    fake.clear_faults()


def _create(client: httpx.Client, **params: str) -> httpx.Response:
    form = {"amount": "700", "currency": "usd", "confirm": "true", **params}
    return client.post("/v1/payment_intents", data=form)


def test_an_admin_fault_fails_the_next_request_only(client: httpx.Client) -> None:
    """A fault queued over HTTP answers the next create with its status, then passes."""
    queued = client.post(
        "/_sandbox/faults",
        json={"operation": "payment_intents.create", "kind": "fail", "status": 503},
    )

    failed = _create(client, payment_method="pm_card_visa")
    passed = _create(client, payment_method="pm_card_visa")

    assert queued.json() == {"queued": 1}
    assert failed.status_code == 503
    assert failed.headers["stripe-should-retry"] == "true"
    assert passed.json()["status"] == "succeeded"


def test_the_three_d_secure_page_completes_and_returns(client: httpx.Client) -> None:
    """The redirect URL's page completes 3-D Secure and sends the customer back."""
    waiting = _create(
        client,
        payment_method="pm_card_authenticationRequired",
        capture_method="manual",
        return_url="https://hotel.invalid/back",
    ).json()
    url = waiting["next_action"]["redirect_to_url"]["url"]

    page = client.get(url, follow_redirects=False)
    intent = client.get(f"/v1/payment_intents/{waiting['id']}").json()

    assert page.status_code == 303
    assert page.headers["location"] == f"https://hotel.invalid/back?payment_intent={waiting['id']}"
    assert intent["status"] == "requires_capture"


def test_admin_keys_latency_and_webhook_endpoint(client: httpx.Client, fake: FakeStripe) -> None:
    """Keys, latency and the webhook endpoint are set over HTTP; bad specs are refused."""
    added = client.post("/_sandbox/api_keys", json={"key": "sk_test_added_by_admin"})
    latency = client.post("/_sandbox/latency", json={"seconds": 0})
    endpoint = client.post("/_sandbox/webhook_endpoint", json={"url": None})
    bad = client.post("/_sandbox/faults", json={"kind": "meteor"})
    with httpx.Client(base_url=fake.url, auth=("sk_test_added_by_admin", "")) as other:
        listed = other.get("/v1/payment_intents")

    assert (added.status_code, latency.json(), endpoint.json()) == (
        200,
        {"seconds": 0.0},
        {"url": None},
    )
    assert bad.status_code == 400
    assert listed.json()["object"] == "list"


@pytest.mark.parametrize(
    ("auth", "status"), [(None, 401), (("sk_test_unknown_key", ""), 401)], ids=["none", "unknown"]
)
def test_requests_without_a_known_key_get_stripes_401(
    fake: FakeStripe, auth: tuple[str, str] | None, status: int
) -> None:
    """No key, or a key the fake does not know, is a 401 with Stripe's error body."""
    with httpx.Client(base_url=fake.url, auth=auth) as http:
        answer = http.get("/v1/payment_intents")

    assert answer.status_code == status
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "sk_test_unknown_key" not in answer.text


def test_a_validation_failure_is_not_stored_under_the_key(client: httpx.Client) -> None:
    """A create that fails validation keeps no answer: the same key then works."""
    headers = {"Idempotency-Key": "sandbox-validation-1"}
    form = {"amount": "700", "currency": "usd", "confirm": "true", "payment_method": "pm_card_visa"}

    invalid = client.post("/v1/payment_intents", data={**form, "amount": "x"}, headers=headers)
    retried = client.post("/v1/payment_intents", data=form, headers=headers)

    assert invalid.status_code == 400
    assert retried.status_code == 200
