"""Money on the wire: an integer count of a currency's minor units, never a float.

``Money(minor=1234, currency="USD")`` is 12.34 US dollars; ``Money(minor=1500,
currency="JPY")`` is 1500 yen, because the yen has no minor unit. How many decimal places a
currency has is its ISO 4217 exponent, kept in ``CURRENCY_EXPONENTS``; a currency that is
not in that table is refused. Conversions to and from decimal strings are exact: a string
with more fraction digits than the currency has is refused, never rounded.
"""

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, field_validator

CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AED": 2,
        "AFN": 2,
        "AUD": 2,
        "BHD": 3,
        "BRL": 2,
        "CAD": 2,
        "CHF": 2,
        "CLP": 0,
        "CNY": 2,
        "CZK": 2,
        "DKK": 2,
        "EGP": 2,
        "EUR": 2,
        "GBP": 2,
        "HKD": 2,
        "HUF": 2,
        "IDR": 2,
        "ILS": 2,
        "INR": 2,
        "IQD": 3,
        "IRR": 2,
        "ISK": 0,
        "JOD": 3,
        "JPY": 0,
        "KRW": 0,
        "KWD": 3,
        "KZT": 2,
        "LYD": 3,
        "MXN": 2,
        "MYR": 2,
        "NOK": 2,
        "NZD": 2,
        "OMR": 3,
        "PKR": 2,
        "PLN": 2,
        "QAR": 2,
        "SAR": 2,
        "SEK": 2,
        "SGD": 2,
        "TJS": 2,
        "THB": 2,
        "TMT": 2,
        "TND": 3,
        "TRY": 2,
        "UGX": 0,
        "USD": 2,
        "UZS": 2,
        "VND": 0,
        "XAF": 0,
        "XOF": 0,
        "ZAR": 2,
    }
)
"""ISO 4217 code -> number of decimal places of its minor unit."""

MAX_MINOR: Final = 999_999_999_999_999
"""The largest amount accepted: 15 digits, exact in a JSON double and in a Postgres bigint."""

_CURRENCY_ENUM: Final[list[JsonValue]] = [*sorted(CURRENCY_EXPONENTS)]
_DECIMAL_STRING: Final = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")


class UnknownCurrencyError(ValueError):
    """A currency code that is not in ``CURRENCY_EXPONENTS``."""


class CurrencyMismatchError(ValueError):
    """Two amounts in different currencies were combined or compared."""


class MoneyError(ValueError):
    """An amount that cannot be represented: malformed, too precise, negative or too large."""


def exponent(currency: str) -> int:
    """The number of decimal places of ``currency``'s minor unit (2 for USD, 0 for JPY)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        shown = repr(currency)[:12]
        raise UnknownCurrencyError(
            f"unknown currency {shown}: expected an ISO 4217 code from the currency table"
        ) from None


class Money(BaseModel):
    """A non-negative amount in a currency's minor units (cents, fils, or whole yen)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minor: StrictInt = Field(
        ge=0,
        le=MAX_MINOR,
        description="Amount in the currency's minor units, e.g. 1234 for 12.34 USD.",
    )
    currency: str = Field(
        description="ISO 4217 currency code.",
        json_schema_extra={"enum": _CURRENCY_ENUM},
    )

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        exponent(value)
        return value

    @classmethod
    def zero(cls, currency: str) -> Self:
        """No money in ``currency``."""
        return cls(minor=0, currency=currency)

    @classmethod
    def from_decimal_string(cls, value: str, currency: str) -> Self:
        """Parse ``"12.34"`` into 1234 minor units; refuse anything that would need rounding.

        Only plain ASCII digits with an optional ``.`` and fraction are accepted: no sign,
        exponent, grouping, whitespace, or more fraction digits than ``currency`` has.
        """
        places = exponent(currency)
        match = _DECIMAL_STRING.fullmatch(value)
        if match is None:
            raise MoneyError(f"{value[:40]!r} is not a plain decimal amount like '12.34'")
        fraction = match.group("fraction") or ""
        if len(fraction) > places:
            raise MoneyError(
                f"{value[:40]!r} has {len(fraction)} fraction digits; {currency} has {places}"
            )
        minor = int(match.group("whole") + fraction.ljust(places, "0"))
        if minor > MAX_MINOR:
            raise MoneyError(f"{value[:40]!r} exceeds the largest accepted amount")
        return cls(minor=minor, currency=currency)

    def to_decimal_string(self) -> str:
        """The amount in major units with exactly the currency's decimal places: ``"12.34"``."""
        places = exponent(self.currency)
        if places == 0:
            return str(self.minor)
        digits = str(self.minor).rjust(places + 1, "0")
        return f"{digits[:-places]}.{digits[-places:]}"

    def is_zero(self) -> bool:
        """Whether the amount is nothing."""
        return self.minor == 0

    def le(self, other: "Money") -> bool:
        """Whether this amount is at most ``other``; both must be in the same currency."""
        self._same_currency(other)
        return self.minor <= other.minor

    def __add__(self, other: "Money") -> "Money":
        """The sum of two amounts in the same currency."""
        self._same_currency(other)
        total = self.minor + other.minor
        if total > MAX_MINOR:
            raise MoneyError("sum exceeds the largest accepted amount")
        return Money(minor=total, currency=self.currency)

    def __sub__(self, other: "Money") -> "Money":
        """The difference of two amounts in the same currency; refused if it would be negative."""
        self._same_currency(other)
        if other.minor > self.minor:
            raise MoneyError(
                f"cannot subtract {other.to_decimal_string()} from {self.to_decimal_string()} "
                f"{self.currency}: the result would be negative"
            )
        return Money(minor=self.minor - other.minor, currency=self.currency)

    def _same_currency(self, other: "Money") -> None:
        if not isinstance(other, Money):
            raise TypeError(f"expected Money, got {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"cannot combine {self.currency} with {other.currency}: convert first"
            )
