"""Validation rules of the PII formats: card ranges and Luhn, IBAN lengths and mod-97, SSN rules, phone shapes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import phonenumbers

# --------------------------------------------------------------------------- payment cards
# (first prefix, last prefix, allowed lengths): the issuer ranges (IIN) of the card networks a gateway
# is likely to see. A Luhn-valid number outside every range is not reported (ids, IMEIs, test data).
_CARD_RANGES: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset(range(16, 20))),  # Discover
    (644, 649, frozenset(range(16, 20))),
    (65, 65, frozenset(range(16, 20))),
    (62, 62, frozenset(range(16, 20))),  # UnionPay
    (3528, 3589, frozenset(range(16, 20))),  # JCB
    (300, 305, frozenset(range(14, 20))),  # Diners Club
    (3095, 3095, frozenset(range(14, 20))),
    (36, 36, frozenset(range(14, 20))),
    (38, 39, frozenset(range(14, 20))),
    (2200, 2204, frozenset(range(16, 20))),  # Mir
    (50, 50, frozenset(range(12, 20))),  # Maestro
    (56, 58, frozenset(range(12, 20))),
    (63, 63, frozenset(range(12, 20))),
    (67, 67, frozenset(range(12, 20))),
    (9792, 9792, frozenset({16})),  # Troy
)


def is_luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """True for 12-19 digits in a known issuer range, of that network's length, passing the Luhn check."""
    n = len(digits)
    if not 12 <= n <= 19:
        return False
    for lo, hi, lengths in _CARD_RANGES:
        width = len(str(lo))
        if lo <= int(digits[:width]) <= hi and n in lengths:
            return is_luhn_valid(digits)
    return False


# --------------------------------------------------------------------------- IBAN
# ISO 13616 registry: country code -> IBAN length (SWIFT IBAN registry, release 2024).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def is_iban(compact: str) -> bool:
    """True when `compact` (no spaces, upper case) has its country's length and passes the mod-97 check."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# --------------------------------------------------------------------------- US SSN
def is_ssn(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# --------------------------------------------------------------------------- IP addresses
def is_personal_ip(address: str) -> bool:
    """True for a unicast address that can point at a person's or company's host.

    Loopback, unspecified, multicast and reserved addresses (which include 255.x netmasks) are
    infrastructure constants, not personal data; private and link-local addresses are reported.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved)


# --------------------------------------------------------------------------- phone numbers
_SEPARATORS = re.compile(r"[ .()\-\u00a0\u202f]")
# National shapes accepted without a phone word nearby: NANP 3-3-4 with separators, and trunk-prefix
# numbers (0...) split into groups, as written in the UK, Germany, France and most of Europe.
_NANP = re.compile(r"\(?[2-9]\d{2}\)?[ .\-]?[2-9]\d{2}[ .\-]\d{4}")
_TRUNK_GROUPED = re.compile(r"\(?0\d{1,4}\)?(?:[ .\-/]\d{2,8}){1,5}")
_NANP_LOCAL = re.compile(r"[2-9]\d{2}-\d{4}")
PHONE_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)  # ISO 3166 codes with a numbering plan


def warm_phone_metadata(regions: Sequence[str]) -> None:
    """Parse one number per region so the hot path never pays phonenumbers' first-use cost (about 1 ms)."""
    for region in regions:
        example = phonenumbers.example_number(region)
        if example is not None:
            phonenumbers.is_valid_number(example)


def is_phone_number(candidate: str, *, regions: Sequence[str], has_context: bool) -> bool:
    """Decide whether a numeric run (already isolated from surrounding text) is a phone number.

    International numbers (+ or 00) must be valid in the numbering plan of their country code. National
    numbers must be valid in one of `regions` and either have a phone shape (NANP 3-3-4 or a grouped
    0-prefixed number) or follow a phone word (`has_context`); 7-digit local numbers need a phone word.
    With a phone word, a number of possible length in an unallocated range also counts.
    """
    digits = _SEPARATORS.sub("", candidate)
    if not digits.lstrip("+").isdigit():
        return False
    if digits.startswith(("+", "00")):
        number = "+" + digits.lstrip("+")[2 if digits.startswith("00") else 0 :]
        if not 8 <= len(number) - 1 <= 15:
            return False
        return _check(number, None, has_context)
    if not 7 <= len(digits) <= 12:
        return False
    grouped = digits != candidate
    if len(digits) == 7:
        return has_context and _NANP_LOCAL.fullmatch(candidate) is not None
    phone_shaped = grouped and (_NANP.fullmatch(candidate) or _TRUNK_GROUPED.fullmatch(candidate))
    if not phone_shaped and not has_context:
        return False
    return any(_check(digits, region, has_context) for region in regions)


def _check(number: str, region: str | None, has_context: bool) -> bool:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_valid_number(parsed):
        return True
    return has_context and phonenumbers.is_possible_number(parsed)
