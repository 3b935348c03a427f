"""pii_formats through PIICheck: the issuer ranges and lengths of payment cards, IBANs, SSNs, phones, IPs."""

from __future__ import annotations

import pytest

from gateway.checks.pii import PIICheck


@pytest.fixture(scope="module")
def cards() -> PIICheck:
    return PIICheck(kinds=["credit_card"])


def found(check: PIICheck, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in check.scan(text)]


def luhn_number(prefix: str, length: int) -> str:
    """`prefix`, zeros, and the one check digit that makes `length` digits pass the Luhn check."""
    body = prefix + "0" * (length - len(prefix) - 1)
    for check in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(body + check)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


# Each issuer range's first and last prefix and the prefixes just outside it, with the lengths (of 12-19)
# at which a Luhn-valid number is reported: every boundary of the range table is pinned by a row.
CARD_PREFIXES = [
    ("50", {12, 13, 14, 15, 16, 17, 18, 19}),
    ("51", {16}),
    ("55", {16}),
    ("56", {12, 13, 14, 15, 16, 17, 18, 19}),
    ("2220", set()),
    ("2221", {16}),
    ("2720", {16}),
    ("2721", set()),
    ("33", set()),
    ("34", {15}),
    ("35", set()),
    ("36", {14, 15, 16, 17, 18, 19}),
    ("37", {15}),
    ("38", {14, 15, 16, 17, 18, 19}),
    ("6010", set()),
    ("6011", {16, 17, 18, 19}),
    ("6012", set()),
    ("643", set()),
    ("644", {16, 17, 18, 19}),
    ("649", {16, 17, 18, 19}),
    ("650", {16, 17, 18, 19}),
    ("64", set()),
    ("65", {16, 17, 18, 19}),
    ("66", set()),
    ("61", set()),
    ("62", {16, 17, 18, 19}),
    ("63", {12, 13, 14, 15, 16, 17, 18, 19}),
    ("3527", set()),
    ("3528", {16, 17, 18, 19}),
    ("3589", {16, 17, 18, 19}),
    ("3590", set()),
    ("299", set()),
    ("300", {14, 15, 16, 17, 18, 19}),
    ("305", {14, 15, 16, 17, 18, 19}),
    ("306", set()),
    ("3094", set()),
    ("3095", {14, 15, 16, 17, 18, 19}),
    ("3096", set()),
    ("39", {14, 15, 16, 17, 18, 19}),
    ("40", {13, 16, 19}),
    ("2199", set()),
    ("2200", {16, 17, 18, 19}),
    ("2204", {16, 17, 18, 19}),
    ("2205", set()),
    ("49", {13, 16, 19}),
    ("58", {12, 13, 14, 15, 16, 17, 18, 19}),
    ("59", set()),
    ("67", {12, 13, 14, 15, 16, 17, 18, 19}),
    ("68", set()),
    ("9791", set()),
    ("9792", {16}),
    ("9793", set()),
]


@pytest.mark.parametrize(("prefix", "lengths"), CARD_PREFIXES)
def test_card_issuer_ranges_and_lengths(cards: PIICheck, prefix: str, lengths: set[int]) -> None:
    reported = {n for n in range(12, 20) if found(cards, f"card {luhn_number(prefix, n)} ok")}
    assert reported == lengths


# The SWIFT IBAN registry (release 2024): country code and IBAN length.
IBAN_REGISTRY = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 "
    "DE22 DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 "
    "GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 "
    "LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 "
    "PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 "
    "TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30"
).split()


def iban_of_length(country: str, length: int, *, bban: str = "1234567890" * 4) -> str:
    """A `length`-character IBAN for `country` with a correct mod-97 check number."""
    bban = bban[: length - 4]
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


@pytest.mark.parametrize("entry", IBAN_REGISTRY)
def test_iban_is_reported_only_at_its_countrys_length(entry: str) -> None:
    country, length = entry[:2], int(entry[2:])
    ibans = PIICheck(kinds=["iban"])
    reported = [n for n in (length - 1, length, length + 1) if found(ibans, f"iban {iban_of_length(country, n)} ok")]
    assert reported == [length]


def test_iban_with_letters_up_to_z_is_reported() -> None:
    iban = iban_of_length("GB", 22, bban="WZYZ12345698765432")  # Z is 35, the last base-36 digit
    assert found(PIICheck(kinds=["iban"]), f"pay {iban} now") == [("iban", iban)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssn 001-01-0001", [("us_ssn", "001-01-0001")]),  # the lowest issuable area, group and serial
        ("ssn 000-12-3456", []),  # area 000 is never issued
        ("ssn 665-12-3456", [("us_ssn", "665-12-3456")]),
        ("ssn 666-12-3456", []),
        ("ssn 667-12-3456", [("us_ssn", "667-12-3456")]),
        ("ssn 123-00-4567", []),
        ("ssn 123-45-0000", []),
        ("ssn 123-01-0001", [("us_ssn", "123-01-0001")]),
    ],
)
def test_ssn_area_group_and_serial_rules(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(PIICheck(kinds=["us_ssn"]), text) == expected


@pytest.mark.parametrize(
    ("address", "reported"),
    [
        ("81.2.69.160", True),
        ("10.0.0.5", True),  # private: a company's host
        ("169.254.10.20", True),  # link-local
        ("127.0.0.1", False),  # loopback
        ("0.0.0.0", False),  # unspecified
        ("224.0.0.251", False),  # multicast (mDNS)
        ("240.0.0.1", False),  # reserved
        ("255.255.255.0", False),  # a netmask, reserved
        ("2001:db8::1", True),
        ("fe80::1", True),
        ("ff02::1", False),  # multicast
        ("::", False),
    ],
)
def test_ip_infrastructure_constants_are_not_personal(address: str, reported: bool) -> None:
    assert bool(found(PIICheck(kinds=["ipv4", "ipv6"]), f"host {address} seen")) is reported


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +683 4002 now", []),  # 7 digits with the country code (valid in Niue): below the minimum of 8
        ("call +0 123 456 789 now", []),  # no country code starts with 0: phonenumbers cannot parse it
        ("call 00 0123 456 789 now", []),
        ("see +1 212 055 0187 now", []),  # possible length, unallocated exchange: not without a phone word
        ("call +1 212 055 0187 now", [("phone", "+1 212 055 0187")]),  # with one, a possible number counts
    ],
)
def test_phone_international_numbers(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(PIICheck(kinds=["phone"]), text) == expected
