"""Money: integer minor units in a known currency, exact decimal strings, same-currency maths."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.money import (
    CURRENCY_EXPONENTS,
    MAX_MINOR,
    CurrencyMismatchError,
    Money,
    MoneyError,
    UnknownCurrencyError,
    exponent,
)

REQUIRED_EXPONENTS = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "AFN": 2,
    "KWD": 3,
    "BHD": 3,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "INR": 2,
    "TRY": 2,
    "AED": 2,
    "SAR": 2,
    "PKR": 2,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
}


def test_the_table_has_the_iso_exponents_we_rely_on() -> None:
    """Every currency the platform prices in is present with its ISO 4217 exponent."""
    for currency, places in REQUIRED_EXPONENTS.items():
        assert exponent(currency) == places, currency
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)


def test_the_table_is_read_only() -> None:
    """Nobody can add a currency at run time."""
    with pytest.raises(TypeError):
        CURRENCY_EXPONENTS["XXX"] = 2  # type: ignore[index]


def test_unknown_currency_is_refused_everywhere() -> None:
    """A code outside the table fails exponent(), the model and the parser alike."""
    with pytest.raises(UnknownCurrencyError, match="unknown currency 'XYZ'"):
        exponent("XYZ")
    with pytest.raises(ValidationError, match="unknown currency"):
        Money(minor=1, currency="usd")
    with pytest.raises(UnknownCurrencyError):
        Money.from_decimal_string("1.00", "ZZZ")


@pytest.mark.parametrize("minor", [1.0, 1.5, "100", True, None, -1, MAX_MINOR + 1])
def test_minor_must_be_a_non_negative_strict_int(minor: object) -> None:
    """Floats, numeric strings, booleans, negatives and oversized amounts are refused."""
    with pytest.raises(ValidationError):
        Money.model_validate({"minor": minor, "currency": "USD"})


@pytest.mark.parametrize(
    "body", ['{"minor": 100.0, "currency": "USD"}', '{"minor": "100", "currency": "USD"}']
)
def test_json_floats_and_strings_are_refused(body: str) -> None:
    """On the wire too, an amount is a JSON integer and nothing else."""
    with pytest.raises(ValidationError, match="valid integer"):
        Money.model_validate_json(body)


def test_money_is_frozen_and_closed() -> None:
    """Amounts cannot be changed after creation and carry no extra fields."""
    price = Money(minor=100, currency="USD")
    with pytest.raises(ValidationError):
        price.minor = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        Money.model_validate({"minor": 1, "currency": "USD", "fx": "1.1"})
    assert hash(price) == hash(Money(minor=100, currency="USD"))


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1234, "USD", "12.34"),
        (5, "USD", "0.05"),
        (0, "EUR", "0.00"),
        (1500, "JPY", "1500"),
        (0, "KRW", "0"),
        (1500, "KWD", "1.500"),
        (7, "BHD", "0.007"),
        (123456789, "AFN", "1234567.89"),
    ],
)
def test_decimal_strings_both_ways(minor: int, currency: str, text: str) -> None:
    """to_decimal_string writes exactly the exponent's places; from_decimal_string reads it back."""
    money = Money(minor=minor, currency=currency)
    assert money.to_decimal_string() == text
    assert Money.from_decimal_string(text, currency) == money


def test_fewer_fraction_digits_are_padded() -> None:
    """'12.3' dollars is 1230 cents and '7' dinars is 7000 fils."""
    assert Money.from_decimal_string("12.3", "USD").minor == 1230
    assert Money.from_decimal_string("7", "KWD").minor == 7000


@pytest.mark.parametrize(
    ("text", "currency"),
    [("12.345", "USD"), ("1500.0", "JPY"), ("1.0005", "KWD"), ("12.340", "EUR")],
)
def test_more_fraction_digits_than_the_currency_has_are_refused(text: str, currency: str) -> None:
    """Nothing is ever rounded: a too-precise amount is an error, even with trailing zeros."""
    with pytest.raises(MoneyError, match="fraction digits"):
        Money.from_decimal_string(text, currency)


@pytest.mark.parametrize(
    "text",
    ["", "-1.00", "+1.00", "1e3", "1,000.00", " 1.00", "1.00\n", "1.", ".5", "1_000", "١٢", "NaN"],
)
def test_anything_but_plain_ascii_decimals_is_refused(text: str) -> None:
    """Signs, exponents, grouping, whitespace, bare points and non-ASCII digits are refused."""
    with pytest.raises(MoneyError, match="plain decimal"):
        Money.from_decimal_string(text, "USD")


def test_parsing_refuses_amounts_above_the_maximum() -> None:
    """A decimal string whose minor units exceed MAX_MINOR is refused."""
    with pytest.raises(MoneyError, match="largest"):
        Money.from_decimal_string("99999999999999999", "USD")


def test_addition_and_subtraction_in_one_currency() -> None:
    """Sums and differences stay in the currency; a negative result is refused."""
    ten = Money(minor=1000, currency="GBP")
    three = Money(minor=300, currency="GBP")
    assert ten + three == Money(minor=1300, currency="GBP")
    assert ten - three == Money(minor=700, currency="GBP")
    assert (three - three).is_zero()
    with pytest.raises(MoneyError, match="negative"):
        _ = three - ten


def test_mixing_currencies_is_refused() -> None:
    """Adding, subtracting or comparing USD with EUR raises CurrencyMismatchError."""
    usd = Money(minor=100, currency="USD")
    eur = Money(minor=100, currency="EUR")
    with pytest.raises(CurrencyMismatchError):
        _ = usd + eur
    with pytest.raises(CurrencyMismatchError):
        _ = usd - eur
    with pytest.raises(CurrencyMismatchError):
        usd.le(eur)


def test_comparison_helpers() -> None:
    """le() is <= within a currency, is_zero() is true only for nothing, zero() makes it."""
    small = Money(minor=1, currency="JPY")
    big = Money(minor=2, currency="JPY")
    assert small.le(big)
    assert small.le(small)
    assert not big.le(small)
    assert Money.zero("JPY").is_zero()
    assert not small.is_zero()


def test_sums_above_the_maximum_are_refused() -> None:
    """Adding past MAX_MINOR raises rather than produce an unrepresentable amount."""
    top = Money(minor=MAX_MINOR, currency="USD")
    with pytest.raises(MoneyError, match="largest"):
        _ = top + Money(minor=1, currency="USD")


@given(
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
    minor=st.integers(min_value=0, max_value=MAX_MINOR),
)
def test_every_amount_round_trips_through_its_decimal_string(currency: str, minor: int) -> None:
    """For every currency in the table, from_decimal_string(to_decimal_string(m)) == m."""
    money = Money(minor=minor, currency=currency)
    text = money.to_decimal_string()
    assert Money.from_decimal_string(text, currency) == money
    fraction = text.partition(".")[2]
    assert len(fraction) == exponent(currency)


@given(
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
    whole=st.integers(min_value=0, max_value=10**9),
    data=st.data(),
)
def test_every_canonical_decimal_string_round_trips(
    currency: str, whole: int, data: st.DataObject
) -> None:
    """A string with exactly the currency's places reads and writes back unchanged."""
    places = exponent(currency)
    fraction = data.draw(st.text(alphabet="0123456789", min_size=places, max_size=places))
    text = f"{whole}.{fraction}" if places else str(whole)
    assert Money.from_decimal_string(text, currency).to_decimal_string() == text
