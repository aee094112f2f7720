"""Card-number detection: Luhn-valid 13-19 digit runs anywhere in a JSON payload."""

import json

import pytest

from schemas.cards import (
    CardDataError,
    contains_card_number,
    ensure_no_card_number,
    find_card_number,
    luhn_valid,
)

TEST_PANS = [
    "4242424242424242",
    "4000 0566 5566 5556",
    "378282246310005",
    "6011-1111-1111-1117",
    "5555555555554444",
    "3056930009020004",
    "4222222222222",
]


@pytest.mark.parametrize("pan", TEST_PANS)
def test_vendor_test_cards_are_found_in_a_string(pan: str) -> None:
    """Stripe's published test numbers, plain or grouped, are flagged inside free text."""
    assert contains_card_number(f"card was {pan}, thanks")
    assert find_card_number({"note": f"card was {pan}"}) == "$.note"


def test_luhn_check() -> None:
    """The Luhn check accepts valid numbers and rejects a single changed digit."""
    assert luhn_valid("4242424242424242")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4242424242424241")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",
        "1234 5678 9012 3456",
        "1111-1111-1111-1112",
    ],
)
def test_sixteen_digits_failing_luhn_are_not_flagged(text: str) -> None:
    """A 16-digit booking or order number that fails Luhn is not a card number."""
    assert not luhn_valid(text.replace(" ", "").replace("-", ""))
    assert find_card_number({"ref": text}) is None


@pytest.mark.parametrize("text", ["424242424242", "4242 4242 4242"])
def test_twelve_digits_are_too_short(text: str) -> None:
    """Twelve Luhn-valid digits are below the 13-digit minimum of a PAN."""
    assert luhn_valid(text.replace(" ", ""))
    assert find_card_number([text]) is None


def test_twenty_contiguous_digits_are_too_long() -> None:
    """A 20-digit Luhn-valid run is an identifier, not a card number, and is not split."""
    run = "42424242424242424242"
    assert luhn_valid(run)
    assert find_card_number({"id": run}) is None


def test_a_card_number_inside_a_longer_digit_run_is_not_flagged() -> None:
    """Digits are never carved out of a longer contiguous run: a 25-digit reference is fine."""
    assert find_card_number({"ref": "123" + "4242424242424242" + "991234"}) is None
    assert find_card_number({"ref": "0" * 5 + "4242424242424242"}) is None


def test_a_card_number_next_to_other_groups_is_still_found() -> None:
    """A grouped card followed by a CVC-like group is found by trying whole groups."""
    assert contains_card_number("4242 4242 4242 4242 123")
    assert contains_card_number("tel 12 4242424242424242")


def test_double_separators_break_a_group() -> None:
    """Only single spaces or dashes join groups; '4242  4242' is two separate runs."""
    assert find_card_number("4242  4242  4242  4242") is None
    assert find_card_number("4242--4242--4242--4242") is None


def test_ints_and_floats_are_scanned() -> None:
    """A card number sent as a JSON number is found; booleans are not numbers here."""
    assert find_card_number({"amount": 4242424242424242}) == "$.amount"
    assert find_card_number({"x": 4242424242424242.0}) == "$.x"
    assert find_card_number({"ok": True, "n": 1234}) is None


def test_nested_paths_name_the_location() -> None:
    """The path walks dict keys and list indexes down to the offending value."""
    payload = {"a": {"b": [{"c": "ok"}, {"d": ["x", "pan 378282246310005"]}]}}
    assert find_card_number(payload) == "$.a.b[1].d[1]"


def test_a_key_that_is_a_card_number_is_found_without_echoing_it() -> None:
    """A dict key holding a PAN is reported by position, never by its text."""
    path = find_card_number({"metadata": {"ok": "1", "4242424242424242": "x"}})
    assert path == "$.metadata{key #1}"
    assert "4242" not in path


def test_odd_keys_are_quoted_in_the_path() -> None:
    """Keys that are not plain identifiers appear quoted, and long ones are shortened."""
    assert find_card_number({"my key": "4242424242424242"}) == '$["my key"]'
    long_key = "k" * 100
    path = find_card_number({long_key: "4242424242424242"})
    assert path == '$["' + "k" * 40 + '..."]'


def test_the_first_hit_in_document_order_wins() -> None:
    """With several card numbers the path of the first in document order is returned."""
    payload = json.loads('{"first": ["378282246310005"], "second": "4242424242424242"}')
    assert find_card_number(payload) == "$.first[0]"


def test_persian_digits_count() -> None:
    """Arabic-Indic digits (as typed on Afghan and Persian keyboards) are digits too."""
    persian = "۴۲۴۲۴۲۴۲۴۲۴۲۴۲۴۲"
    assert find_card_number({"note": persian}) == "$.note"


def test_clean_payloads_pass() -> None:
    """An ordinary authorize command has no card number in it."""
    payload = {
        "payment_id": "pay_01HXYZ",
        "amount": {"minor": 123456, "currency": "USD"},
        "payment_method": {"type": "card", "token": "pm_1Abc2Def3"},
        "booking_reference": "BK-2024-000123",
        "metadata": {"room": "1204", "phone": "+93 700 123 456"},
    }
    assert find_card_number(payload) is None
    ensure_no_card_number(payload)


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    """A 5,000-deep structure is scanned iteratively, not recursively."""
    payload: object = "4242424242424242"
    for _ in range(5000):
        payload = [payload]
    path = find_card_number(payload)
    assert path is not None
    assert path.endswith("[0]")


def test_card_data_error_names_the_path_only() -> None:
    """The error message carries the path and never the digits."""
    with pytest.raises(CardDataError) as caught:
        ensure_no_card_number({"description": "4242 4242 4242 4242"})
    assert caught.value.path == "$.description"
    assert "$.description" in str(caught.value)
    assert "4242" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "0c66dd75-9355-4735-9151-943bb4fd1c1a",
        "3ff82e85-c3da-4e83-9901-70945968439e",
        "6743c126-223d-4276-8688-1823436133b7",
        "idem-6743C126-223D-4276-8688-1823436133B7",
    ],
)
def test_uuids_are_not_card_numbers(text: str) -> None:
    """UUIDs whose digit groups happen to pass Luhn are not mistaken for card numbers."""
    assert not contains_card_number(text)


def test_a_card_number_beside_a_uuid_is_still_found() -> None:
    """Taking UUIDs out of the scan leaves a card number next to one visible."""
    assert contains_card_number("0c66dd75-9355-4735-9151-943bb4fd1c1a 4242 4242 4242 4242")
    assert contains_card_number("4242424242424242-0c66dd75-9355-4735-9151-943bb4fd1c1a")


def test_a_card_number_fused_to_a_uuid_is_still_found() -> None:
    """A card number running into UUID-shaped digits is not taken for part of the UUID."""
    assert contains_card_number("4111111111111111-1111-1111-1111-111111111111")
