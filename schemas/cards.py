"""Detect primary account numbers (card numbers) anywhere in a JSON-like payload.

The gateway never accepts raw card numbers: vendors tokenise them in the customer's
browser. A command that carries one anyway is refused, and the refusal names where in the
payload the number sat, never the number. A candidate is a group of 13-19 digits, either
contiguous or written in groups separated by one space or one dash (``4242 4242 4242 4242``,
``6011-1111-1111-1117``), that passes the Luhn check. A digit group is never split: a
16-digit number inside a 25-digit reference is not a card number. Unicode decimal digits
(Arabic-Indic, Persian) count as digits.

UUIDs are taken out before the scan: their dash-separated groups are often all digits
(``9355-4735-9151-943b...`` holds a Luhn-valid 15-digit run), and a UUID is 32 hex digits,
too long to be a card number, so removing them hides none.
"""

import re
import unicodedata
from collections.abc import Iterator
from typing import Final

MIN_PAN_DIGITS: Final = 13
MAX_PAN_DIGITS: Final = 19

_GROUPED_DIGITS: Final = re.compile(r"\d+(?:[ -]\d+)*")
_SEPARATOR: Final = re.compile(r"[ -]")
_UUID: Final = re.compile(
    r"(?<![0-9A-Fa-f])"
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"(?![0-9A-Fa-f])"
)
"""A whole UUID (never the tail of a longer run of digits, which could hide a card)."""
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SHOWN_KEY_CHARS: Final = 40
_LUHN_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


class CardDataError(ValueError):
    """A payload carries what looks like a card number; the message names only its path."""

    def __init__(self, path: str) -> None:
        """Record the JSON path of the card number."""
        super().__init__(f"card number found at {path}: raw card data is never accepted")
        self.path = path


def luhn_valid(digits: str) -> bool:
    """Whether a string of decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = unicodedata.decimal(char)
        total += _LUHN_DOUBLED[value] if position % 2 else value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    """Whether ``text`` holds a Luhn-valid run of 13-19 digits, possibly grouped."""
    for match in _GROUPED_DIGITS.finditer(_UUID.sub("|", text)):
        groups = _SEPARATOR.split(match.group())
        if any(_is_pan(groups[start:]) for start in range(len(groups))):
            return True
    return False


def _is_pan(groups: list[str]) -> bool:
    """Whether some leading run of ``groups`` joins into a Luhn-valid 13-19 digit number."""
    digits = ""
    for group in groups:
        digits += group
        if len(digits) > MAX_PAN_DIGITS:
            return False
        if len(digits) >= MIN_PAN_DIGITS and luhn_valid(digits):
            return True
    return False


def _scalar_text(value: object) -> str | None:
    """The text of a scalar worth scanning: strings, and numbers written out in digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return repr(value)
    return None


def _key_path(parent: str, key: object) -> str:
    """``parent.key`` for plain keys, else ``parent["key"]`` with the key shortened."""
    text = str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{parent}.{text}"
    shown = text if len(text) <= _SHOWN_KEY_CHARS else text[:_SHOWN_KEY_CHARS] + "..."
    escaped = shown.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'{parent}["{escaped}"]'


def _walk(value: object) -> Iterator[tuple[str, object]]:
    """Yield ``(path, item)`` for every node in document order, depth first, without recursion.

    A dict key that is itself a card number is yielded as ``parent{key #n}`` so that the
    path never repeats the number.
    """
    stack: list[tuple[str, object]] = [("$", value)]
    while stack:
        path, node = stack.pop()
        yield path, node
        children: list[tuple[str, object]] = []
        if isinstance(node, dict):
            for index, (key, item) in enumerate(node.items()):
                text = _scalar_text(key)
                if text is not None and contains_card_number(text):
                    children.append((f"{path}{{key #{index}}}", key))
                    continue
                children.append((_key_path(path, key), item))
        elif isinstance(node, list | tuple):
            children = [(f"{path}[{index}]", item) for index, item in enumerate(node)]
        stack.extend(reversed(children))


def find_card_number(value: object) -> str | None:
    """The JSON path of the first card number in ``value``, or None if there is none.

    ``value`` is what ``json.loads`` returns (dicts, lists, strings, numbers, booleans,
    None); dict keys are scanned as well as values. Paths look like ``$.metadata.note``,
    ``$.items[2]`` or ``$.metadata{key #0}`` for a key that is itself a card number.
    """
    for path, node in _walk(value):
        text = _scalar_text(node)
        if text is not None and contains_card_number(text):
            return path
    return None


def ensure_no_card_number(value: object) -> None:
    """Raise ``CardDataError`` naming the path of the first card number in ``value``."""
    path = find_card_number(value)
    if path is not None:
        raise CardDataError(path)
