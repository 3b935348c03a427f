"""PIICheck: spans of each kind, validation rules, parameters, redaction."""

from __future__ import annotations

import pytest

from gateway.checks.base import redact
from gateway.checks.pii import PII_KINDS, PIICheck


@pytest.fixture(scope="module")
def pii() -> PIICheck:
    return PIICheck()


def found(check: PIICheck, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in check.scan(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+news@mail.example.co.uk.", [("email", "jane.doe+news@mail.example.co.uk")]),
        ("call +44 20 7946 0958 today", [("phone", "+44 20 7946 0958")]),
        ("call (212) 555-0187 today", [("phone", "(212) 555-0187")]),
        ("card 4111-1111-1111-1111 exp 01/30", [("credit_card", "4111-1111-1111-1111")]),
        ("card 4111 1111 1111 1111 123", [("credit_card", "4111 1111 1111 1111")]),  # trailing CVV left out
        ("iban DE89 3704 0044 0532 0130 00.", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("ssn 536-22-8145", [("us_ssn", "536-22-8145")]),
        ("host 203.0.113.9:443", [("ipv4", "203.0.113.9")]),
        ("host [2001:db8::1]:443", [("ipv6", "2001:db8::1")]),
    ],
)
def test_pii_finds_each_kind_with_exact_span(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "iban DE88 3704 0044 0532 0130 00 has a bad check number",
        "ssn 666-12-3456 and 123-00-4567 and 123-45-0000 break SSA rules",
        "dates 2023-11-15 and 15.11.2023, version 1.2.3.4, build 10.0.19045.3570",
        "order #4815162342, ticket 20240312, timestamp 1700000000",
        "loopback 127.0.0.1, ::1, unspecified 0.0.0.0, netmask 255.255.255.0",
        "npm i lodash@4.17.21, logo@2x.png, git@github.com:acme/api.git, @handle",
        "postgres://app:s3cret@db.internal:5432/orders",
        "MAC 00:1A:2B:3C:4D:5E and time 10:30:00 and std::vector",
    ],
)
def test_pii_ignores_lookalikes(pii: PIICheck, text: str) -> None:
    assert found(pii, text) == []


def test_pii_findings_are_sorted_and_redact_cleanly(pii: PIICheck) -> None:
    text = "From 81.2.69.160, bob@acme.io paid with 5178-6579-7543-2313 (SSN 219-45-7730)."
    findings = pii.scan(text)
    assert [f.start for f in findings] == sorted(f.start for f in findings)
    assert redact(text, findings) == (
        "From [REDACTED:ipv4], [REDACTED:email] paid with [REDACTED:credit_card] (SSN [REDACTED:us_ssn])."
    )


def test_pii_detail_never_contains_the_value(pii: PIICheck) -> None:
    text = "bob@acme.io 5178-6579-7543-2313 +1 415-555-0132 DE89 3704 0044 0532 0130 00"
    for finding in pii.scan(text):
        assert text[finding.start : finding.end] not in finding.detail


def test_pii_kinds_limits_what_is_reported() -> None:
    check = PIICheck(kinds=["email"])
    assert found(check, "bob@acme.io 5178-6579-7543-2313") == [("email", "bob@acme.io")]


def test_pii_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown PII kinds \\['passport'\\]"):
        PIICheck(kinds=["email", "passport"])


def test_pii_phone_regions_decide_national_numbers() -> None:
    text = "The London office is on 020 7946 0958."
    assert found(PIICheck(), text) == [("phone", "020 7946 0958")]
    assert found(PIICheck(phone_regions=["US"]), text) == []


def test_pii_bare_digits_are_a_phone_only_after_a_phone_word(pii: PIICheck) -> None:
    assert found(pii, "phone: 4155550123") == [("phone", "4155550123")]
    assert found(pii, "order 4155550123") == []


@pytest.mark.parametrize(
    "text", ["", "@", "+", "1", "....", "::", "a@b", "+1 (", "\u0663\u0664\u0665\u0666\u0667\u0668\u0669"]
)
def test_pii_degenerate_inputs_find_nothing(pii: PIICheck, text: str) -> None:
    assert pii.scan(text) == []


def test_pii_finds_values_at_both_ends_of_the_text(pii: PIICheck) -> None:
    assert found(pii, "bob@acme.io") == [("email", "bob@acme.io")]
    assert found(pii, "8.8.8.8") == [("ipv4", "8.8.8.8")]


@pytest.mark.parametrize(
    "text",
    [
        "upgrading from 1.2.3.4 to 1.2.4.0",
        "The agent was upgraded from 4.2.0.1 to 4.3.1.0 overnight.",
        "Firmware 3.10.2.7 and 3.10.2.8 both have the bug.",
        "build 7.1.3.0 -> 7.1.4.2",
        "Release notes for 1.4.0.2.1 are out.",
    ],
)
def test_pii_dotted_versions_and_version_ranges_are_not_ipv4(pii: PIICheck, text: str) -> None:
    assert found(pii, text) == []


@pytest.mark.parametrize(
    ("text", "addresses"),
    [
        ("Traffic from 10.0.0.5 to 192.168.1.20 was dropped.", ["10.0.0.5", "192.168.1.20"]),
        ("The DHCP pool runs from 10.1.0.10 to 10.1.0.200.", ["10.1.0.10", "10.1.0.200"]),
        ("After the update, 81.2.69.160 and 81.2.69.161 still answer.", ["81.2.69.160", "81.2.69.161"]),
    ],
)
def test_pii_address_ranges_without_a_version_word_stay_ipv4(pii: PIICheck, text: str, addresses: list[str]) -> None:
    assert found(pii, text) == [("ipv4", address) for address in addresses]


# ------------------------------------------------------------------ rules pinned one by one (issue 21)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssn 899-12-3456", [("us_ssn", "899-12-3456")]),  # the last area before 9xx
        ("ssn 900-12-3456", []),  # 900-999 are never issued
        ("ssn 912-34-5678", []),
        ("ssn 999-12-3456", []),
        ("Her number is 536-22-8145 on file.", [("us_ssn", "536-22-8145")]),  # dashed: no "SSN" needed
        ("ref 536 22 8145 on file", []),  # spaced or unseparated: only after "SSN" / "social security"
        ("ref 536228145 on file", []),
        ("social security 536 22 8145", [("us_ssn", "536 22 8145")]),
        ("SSN: 536228145", [("us_ssn", "536228145")]),
    ],
)
def test_pii_ssn_area_and_separator_rules(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


def test_pii_password_in_a_url_is_not_an_email(pii: PIICheck) -> None:
    # No ":port" after the host, so only the URL-credential rule (not the scp-remote one) can decide.
    assert found(pii, "open https://admin:hunter2@example.com/path now") == []
    assert found(pii, "mailto:jane@example.com") == [("email", "jane@example.com")]  # a colon alone is not a URL


ALL_KINDS_TEXT = (
    "mail bob@acme.io, call +1 415-555-0132, card 5178-6579-7543-2313, iban GB82 WEST 1234 5698 7654 32, "
    "ssn 219-45-7730, host 81.2.69.160 and 2001:db8::1"
)


@pytest.mark.parametrize(
    "kinds",
    [["email"], ["phone"], ["credit_card"], ["iban"], ["us_ssn"], ["ipv4"], ["ipv6"], ["phone", "iban"],
     ["credit_card", "us_ssn", "ipv4"]],
)  # fmt: skip
def test_pii_kinds_reports_exactly_the_chosen_kinds(pii: PIICheck, kinds: list[str]) -> None:
    everything = found(pii, ALL_KINDS_TEXT)
    assert {kind for kind, _ in everything} == set(PII_KINDS)  # the text has one of each
    assert found(PIICheck(kinds=kinds), ALL_KINDS_TEXT) == [(k, v) for k, v in everything if k in kinds]


def test_pii_empty_kinds_is_refused() -> None:
    with pytest.raises(ValueError, match="kinds is empty"):
        PIICheck(kinds=[])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Maestro 5018 0000 0009 works", [("credit_card", "5018 0000 0009")]),  # 12 digits, grouped
        ("Maestro 501800000009 works", [("credit_card", "501800000009")]),  # 12 digits, contiguous
        ("Maestro 5018 0000 0008 fails Luhn", []),
        ("card 4111 1111 1111 works", []),  # Visa has no 12-digit numbers
    ],
)
def test_pii_twelve_digit_maestro_cards(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iban GB82 WEST 1234 5698 7654 32.", [("iban", "GB82 WEST 1234 5698 7654 32")]),  # 22 characters
        ("iban GB82WEST12345698765432.", [("iban", "GB82WEST12345698765432")]),
        ("iban GB82 WEST 1234 5698 7654 3.", []),  # 21: one short
        ("iban GB82 WEST 1234 5698 7654 321.", []),  # 23: one too many
    ],
)
def test_pii_gb_iban_length(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from fe80::1ff:fe23:4567:890a today", [("ipv6", "fe80::1ff:fe23:4567:890a")]),
        ("peer fe80::1 up", [("ipv6", "fe80::1")]),
        ("peer 2001:db8:0:0:0:0:2:1 up", [("ipv6", "2001:db8:0:0:0:0:2:1")]),
        ("id x2001:db8::1 is glued to a word", []),
        ("id 2001:db8::1z is glued to a word", []),
        ("the prefix 1:: has one group", []),
        ("hex dead:beef::cafe has no digit", []),
        ("ratio 3:4 and 12:30:45 are not addresses", []),
        ("loopback ::1 is infrastructure", []),
    ],
)
def test_pii_ipv6_candidates(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
        ("call 0044 20 7946 0958", [("phone", "0044 20 7946 0958")]),  # 00 is an international prefix too
        ("call +500 12345", [("phone", "+500 12345")]),  # 8 digits with the country code: the shortest
        ("call +500 1234", []),  # 7
        ("call +49 30 12345678901", [("phone", "+49 30 12345678901")]),  # 15: the longest
        ("call +49 30 123456789012", []),  # 16
        ("call 555-0187", [("phone", "555-0187")]),  # 7 digits: a local number, with a phone word
        ("see 555-0187 below", []),  # without one
        ("call 5550187", []),  # 7 digits must be written 3-4
        ("phone 02079460958", [("phone", "02079460958")]),  # bare national digits after a phone word
        ("phone 020 7946 0958 1", [("phone", "020 7946 0958 1")]),  # 12 national digits: the longest
        ("phone 4155550123999", []),  # 13 national digits: too long for any region
    ],
)
def test_pii_phone_length_rules(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


def test_pii_unknown_phone_region_is_refused() -> None:
    # "UK" is not ISO 3166 (GB is): accepted silently, it made every UK national number go unreported.
    with pytest.raises(ValueError, match="unknown phone_regions \\['UK'\\]; use ISO 3166 codes"):
        PIICheck(phone_regions=["US", "uk"])
    assert found(PIICheck(phone_regions=["gb"]), "on 020 7946 0958.") == [("phone", "020 7946 0958")]


def test_pii_parameter_errors_say_what_is_expected() -> None:
    with pytest.raises(ValueError, match=r"^unknown PII kinds \['passport'\]; expected some of \['credit_card', "):
        PIICheck(kinds=["passport"])
    with pytest.raises(ValueError, match="^kinds is empty; leave it out to detect every PII kind$"):
        PIICheck(kinds=[])


@pytest.mark.parametrize("text", ["ref X4111111111111111 ok", "host id10.0.0.5 up", "ref X+44 20 7946 0958"])
def test_pii_numbers_glued_to_a_word_are_identifiers(pii: PIICheck, text: str) -> None:
    assert found(pii, text) == []


# ------------------------------------------------------------------ what each finding says, and where spans end
def test_pii_findings_name_the_check_and_the_kind_in_their_detail(pii: PIICheck) -> None:
    details = [(f.check, f.kind, f.detail) for f in pii.scan(ALL_KINDS_TEXT)]
    assert details == [
        ("pii", "email", "email address"),
        ("pii", "phone", "phone number"),
        ("pii", "credit_card", "payment card number"),
        ("pii", "iban", "IBAN (GB)"),
        ("pii", "us_ssn", "US social security number"),
        ("pii", "ipv4", "IPv4 address"),
        ("pii", "ipv6", "IPv6 address"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see .bob@acme.io", [("email", "bob@acme.io")]),  # a leading dot is not part of the address
        ("write to jo@x.ai", [("email", "jo@x.ai")]),  # one-letter domain label
        ("bob..smith@acme.io", []),  # two dots in a row
        ("bob.@acme.io", []),  # a dot right before @
        ("bob@acme.io and eve@acme.io", [("email", "bob@acme.io"), ("email", "eve@acme.io")]),
        ("@team: mail bob@acme.io", [("email", "bob@acme.io")]),  # after an @ that starts no address
        ("x" * 70 + "@acme.io", [("email", "x" * 64 + "@acme.io")]),  # local parts have at most 64 characters
        ("Reach the team at ops@acme.io:", [("email", "ops@acme.io")]),  # a colon at the end is punctuation
        ("mail ops@acme.io: they answer", [("email", "ops@acme.io")]),
        ("clone git@github.com:XRPLF/rippled.git", []),  # an SSH remote, whatever its path starts with
        ("open https://example.com/share?to=bob@acme.io", [("email", "bob@acme.io")]),  # in a URL, not its password
        ("https://admin:hunter2@example.com/path", []),  # a URL's password, at the start of the text
        ("see https://acme.io/help or contact:jane@acme.io", [("email", "jane@acme.io")]),  # another word had ://
        ("see https://acme.io/help\ncontact:jane@acme.io", [("email", "jane@acme.io")]),
    ],
)
def test_pii_email_span_rules(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("phone NL91 ABNA 0417 1643 00", [("iban", "NL91 ABNA 0417 1643 00")]),  # its digits are not also a phone
        ("refGB82WEST12345698765432", []),  # glued to a word
        ("ref ZZ12 3456 7890 1234 5678", []),  # no such country
        ("pay GB82 WEST 1234 5698 7654 32 EUR 100", [("iban", "GB82 WEST 1234 5698 7654 32")]),  # its length, no more
    ],
)
def test_pii_iban_span_rules(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call (020 7946 0958 now", [("phone", "020 7946 0958")]),  # an unclosed parenthesis is left out
        ("call (0161) 496 0000 now", [("phone", "(0161) 496 0000")]),  # a closed one is part of the number
        ("call (06221) 123456 now", [("phone", "(06221) 123456")]),
        ("call me...4155550123", [("phone", "4155550123")]),
        ("phone: 4155550123. Thanks", [("phone", "4155550123")]),
        ("token_4111111111111111 ok", []),  # glued to an identifier on either side
        ("order A-4111111111111111 is an id", []),
        ("order 4111111111111111x2 is a SKU", []),
        ("ticket 4111111111111111-A", []),
        ("-4111111111111111 was charged", [("credit_card", "4111111111111111")]),  # a dash at the text's start
    ],
)
def test_pii_numeric_run_edges(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected


@pytest.mark.parametrize(("gap", "reported"), [(28, True), (29, False)])
def test_pii_phone_word_counts_within_32_characters(pii: PIICheck, gap: int, reported: bool) -> None:
    text = "call" + " " * gap + "4155550123"  # "call" ends 28 or 29 characters before the number
    assert found(pii, text) == ([("phone", "4155550123")] if reported else [])


@pytest.mark.parametrize(("gap", "reported"), [(37, True), (38, False)])
def test_pii_ssn_word_counts_within_40_characters(pii: PIICheck, gap: int, reported: bool) -> None:
    text = "ssn" + " " * gap + "536 22 8145"  # "ssn" starts 40 or 41 characters before the number
    assert found(pii, text) == ([("us_ssn", "536 22 8145")] if reported else [])


@pytest.mark.parametrize(("gap", "reported"), [(57, False), (58, True)])
def test_pii_version_word_counts_within_64_characters(pii: PIICheck, gap: int, reported: bool) -> None:
    text = "version" + " " * gap + "81.2.69.160"  # "version" starts 64 or 65 characters before the quad
    assert found(pii, text) == ([("ipv4", "81.2.69.160")] if reported else [])


@pytest.mark.parametrize(
    ("text", "addresses"),
    [
        ("Release candidate 81.2.69.160 is out", []),  # the version word two words back
        ("Since the update we saw 81.2.69.160 again", ["81.2.69.160"]),  # three words back: a host
        ("Firmware image 3.10.2.7 and 3.10.2.8 both fail", []),  # a range two words after its version word
        ("The firmware team saw 81.2.69.160 and 81.2.69.161 drop", ["81.2.69.160", "81.2.69.161"]),
    ],
)
def test_pii_version_word_distance(pii: PIICheck, text: str, addresses: list[str]) -> None:
    assert found(pii, text) == [("ipv4", address) for address in addresses]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host 2001:db8::81.2.69.160 now", [("ipv6", "2001:db8::81.2.69.160")]),  # an IPv4 tail is part of it
        ("host 2001:db8::8.8.4.4 now", [("ipv6", "2001:db8::8.8.4.4")]),
        ("The peer is fe80::1ff:fe23:4567:890a.", [("ipv6", "fe80::1ff:fe23:4567:890a")]),  # the full stop is not
        ("fe80::1ff:fe23:4567:890a is the peer on eth0", [("ipv6", "fe80::1ff:fe23:4567:890a")]),
        ("addr: fe80::1 up", [("ipv6", "fe80::1")]),
        ("id fdab:cdef::ab has no digit", []),  # a valid private address, but spelt like hex words
        ("prefix fd00:: has one group", []),
        ("if_fe80::1 and fe80::1_lo are names", []),
    ],
)
def test_pii_ipv6_span_rules(pii: PIICheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(pii, text) == expected
