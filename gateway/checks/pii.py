"""PII check: emails, phone numbers, payment cards, IBANs, US SSNs and IP addresses, each validated.

Speed (2-core dev box, CPython 3.11): about 12 µs per KB of typical chat text and 100 µs per KB of
number-dense text (log lines with a dozen numbers each); the first phone number of a country outside
`phone_regions` costs 1-3 ms once per process while phonenumbers loads that country's metadata.
tests/checks/test_speed.py keeps a bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from gateway.checks.base import Finding
from gateway.checks.pii_formats import (
    IBAN_LENGTHS,
    PHONE_REGIONS,
    is_card_number,
    is_iban,
    is_personal_ip,
    is_phone_number,
    is_ssn,
    warm_phone_metadata,
)

PII_KINDS = frozenset({"email", "phone", "credit_card", "iban", "us_ssn", "ipv4", "ipv6"})
_NUMERIC_KINDS = frozenset({"phone", "credit_card", "us_ssn", "ipv4"})

# A run of digits with the separators numbers are written with; every numeric kind is looked for inside
# such a run only, so prose is scanned once and the kind patterns below only see short slices.
# (A leading "[+(]?" would stop `re` from skipping ahead to digits: twice as slow; the scan adds them.)
# At least 7 characters: shorter runs can be none of the numeric kinds ("8.8.8.8" is the shortest).
_NUMERIC_RUN = re.compile(r"\d[\d .()\-\u00a0\u202f]{5,}\d")
_CARD = re.compile(  # 12-digit Maestro numbers included: contiguous or 4-4-4
    r"(?<!\d)(?<!\d[ -])(?:\d{12,19}"
    r"|\d{4}(?P<a>[ -])\d{4}(?P=a)\d{4}(?:(?P=a)\d{1,4}(?:(?P=a)\d{3})?)?"
    r"|\d{4}(?P<b>[ -])\d{6}(?P=b)\d{4,5})(?!\d)"
)
_SSN = re.compile(r"(?<!\d)(?<!\d[ -])(\d{3})([- ]?)(\d{2})\2(\d{4})(?!\d)(?![ -]\d)")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)"
)
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_CIDR_SUFFIX = re.compile(r"/\d{1,2}(?!\d)")  # 10.0.0.0/8 names a network, not a host
_IBAN = re.compile(r"[A-Z][A-Z]\d\d(?: ?[A-Z0-9]{1,4}){3,8}")  # [A-Z]{2} would defeat re's fast skip
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24})(?![A-Za-z0-9\-])"
)
_DROP_SEPARATORS = str.maketrans("", "", " .()-+\u00a0\u202f")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_IPV6_HINT = re.compile(r"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:")  # times (12:30:45) have too few colons

# Words that say a number is a phone number, an SSN, or a version rather than an address.
_PHONE_WORDS = re.compile(
    r"\b(?:call|calls|phone|tel|telephone|mobile|mobil|cell|fax|whatsapp|sms|text|ring|dial|contact|reach|hotline"
    r"|número|numero|numéro|teléfono|telefono|téléphone|portable|móvil|movil|telefon|handy|rufnummer)\b"
)
_SSN_WORDS = re.compile(r"\b(?:ssn|ss#|social security|soc\.? sec\.?|taxpayer)")
_VERSION_WORDS = frozenset(
    "version versions ver release releases released build builds firmware fw rev revision patch patched update "
    "updated updates updating upgrade upgraded upgrades upgrading downgrade downgraded downgrades downgrading bump "
    "bumped bumping section chapter sdk oid kernel driver bios android ios windows macos python node java chrome "
    "firefox package library §".split()
)
# Words between a version word and a dotted quad that keep it a version: "upgrading from 1.2.3.4 to 1.2.4.0".
_RANGE_WORDS = frozenset("from to and or through thru between - -> → –".split())
# File extensions that are not email TLDs in practice: logo@2x.png is an image, not an address.
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff js mjs cjs ts tsx jsx css scss less json yaml yml toml ini cfg "
    "lock txt log html htm xml pdf zip gz tgz tar py rb java go rs sh".split()
)


class PIICheck:
    """Personal data, each kind validated rather than matched by shape alone.

    Parameters (policy YAML `params`):
        kinds: the kinds to report, any of ``email, phone, credit_card, iban, us_ssn, ipv4, ipv6``;
            default all.
        phone_regions: ISO 3166 regions tried, in order, for phone numbers written without ``+``/``00``;
            default ``["US", "GB", "DE", "FR"]``; a code phonenumbers does not know (``UK``) is refused.

    Rules, in brief (the labelled set in tests/checks/data/pii.yaml pins them down):
        email: RFC-ish local part, dotted domain with an alphabetic TLD; not ``git@host:repo``
            remotes, credentials inside URLs, or ``name@2x.png`` files.
        phone: valid in the numbering plan (Google's libphonenumber data via `phonenumbers`); national
            numbers need a phone shape, bare digit runs a phone word nearby ("call", "tel", "Handy"...).
        credit_card: 12-19 digits (contiguous, 4-4-4-4(-3), 4-6-5, 4-6-4), known issuer range and
            length, Luhn check.
        iban: upper-case country code, that country's length, mod-97 check; spaces every 4 allowed.
        us_ssn: ``AAA-GG-SSSS`` with SSA rules (area not 000/666/9xx, group not 00, serial not 0000);
            space-separated or unseparated forms only after "SSN" or "social security".
        ipv4/ipv6: valid unicast addresses, private ones included; loopback, unspecified, multicast,
            reserved (netmasks) excluded, as are dotted quads after "version", "release", "build",
            "section"... or a ``v``, the rest of a range or list they start ("upgrading from 1.2.3.4 to
            1.2.4.0"), and a quad followed by more dotted parts (1.4.0.2.1).
    """

    name = "pii"

    def __init__(self, *, kinds: Iterable[str] | None = None, phone_regions: Sequence[str] = ("US", "GB", "DE", "FR")):
        chosen = frozenset(kinds) if kinds is not None else PII_KINDS
        unknown = chosen - PII_KINDS
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; expected some of {sorted(PII_KINDS)}")
        if not chosen:
            raise ValueError("kinds is empty; leave it out to detect every PII kind")
        self.kinds = chosen
        self.phone_regions = tuple(region.upper() for region in phone_regions)
        unknown_regions = [region for region in self.phone_regions if region not in PHONE_REGIONS]
        if unknown_regions:
            raise ValueError(f"unknown phone_regions {unknown_regions}; use ISO 3166 codes such as GB (not UK)")
        self._memo: dict[tuple[str, object], bool] = {}
        if "phone" in chosen:
            warm_phone_metadata(self.phone_regions)

    def scan(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        if "@" in text and "email" in self.kinds:
            findings.extend(self._emails(text))
        if "ipv6" in self.kinds and ":" in text:
            findings.extend(self._ipv6(text))
        taken = [(f.start, f.end) for f in findings]
        if "iban" in self.kinds:
            for finding in self._ibans(text):
                findings.append(finding)
                taken.append((finding.start, finding.end))
        for match in _NUMERIC_RUN.finditer(text) if self.kinds & _NUMERIC_KINDS else ():
            start, end = match.span()
            if start and text[start - 1] in "+(":
                start -= 1
            digits = len(match.group().translate(_DROP_SEPARATORS))
            if (digits >= 7 or match.group().count(".") >= 3) and _is_isolated(text, start, end):
                if not any(s < end and start < e for s, e in taken):
                    findings.extend(self._numbers(text, start, end, digits))
        findings.sort(key=lambda f: f.start)
        return findings

    # ----------------------------------------------------------------------- kinds
    def _emails(self, text: str) -> Iterable[Finding]:
        at = text.find("@")
        while at != -1:
            start, floor = at, max(0, at - 64)
            while start > floor and text[start - 1] in _EMAIL_LOCAL_CHARS:
                start -= 1
            while start < at and text[start] == ".":
                start += 1
            domain = _EMAIL_DOMAIN.match(text, at + 1) if start < at else None
            if domain:
                if (
                    start < at
                    and ".." not in text[start:at]
                    and text[at - 1] != "."
                    and domain.group(1).lower() not in _FILE_EXTENSIONS
                    and not _is_url_credential(text, start)
                    and not _is_scp_remote(text, domain.end())
                ):
                    yield Finding("pii", "email", start, domain.end(), detail="email address")
                at = text.find("@", domain.end())
            else:
                at = text.find("@", at + 1)

    def _ibans(self, text: str) -> Iterable[Finding]:
        for match in _IBAN.finditer(text):
            start = match.start()
            if start and text[start - 1].isalnum():
                continue
            end = _iban_end(text, start, match.end())
            if end:
                yield Finding("pii", "iban", start, end, detail=f"IBAN ({text[start : start + 2]})")

    def _numbers(self, text: str, start: int, end: int, digit_count: int) -> list[Finding]:
        run = text[start:end]
        found: list[Finding] = []
        if "ipv4" in self.kinds and run.count(".") >= 3:
            for m in _IPV4.finditer(text, start, end):
                if (
                    self._is_personal_ip(m.group())
                    and not _follows_version_word(text, m.start())
                    and not _CIDR_SUFFIX.match(text, m.end())
                ):
                    found.append(Finding("pii", "ipv4", m.start(), m.end(), detail="IPv4 address"))
        if "credit_card" in self.kinds and digit_count >= 12:
            for m in _CARD.finditer(text, start, end):
                span = _card_span(m.group(), m.start())
                if span:
                    found.append(Finding("pii", "credit_card", *span, detail="payment card number"))
        if "us_ssn" in self.kinds and digit_count >= 9:
            for m in _SSN.finditer(text, start, end):
                if is_ssn(m.group(1), m.group(3), m.group(4)) and (m.group(2) == "-" or self._ssn_context(text, m)):
                    found.append(Finding("pii", "us_ssn", m.start(), m.end(), detail="US social security number"))
        if not found and "phone" in self.kinds and digit_count >= 7:
            candidate = run[1:] if run.startswith("(") and ")" not in run else run  # "(0161) 496 0000" keeps it
            context = _PHONE_WORDS.search(text[max(0, start - 32) : start].lower()) is not None
            if self._is_phone(candidate, context):
                found.append(Finding("pii", "phone", end - len(candidate), end, detail="phone number"))
        return found

    @staticmethod
    def _ssn_context(text: str, match: re.Match[str]) -> bool:
        return _SSN_WORDS.search(text[max(0, match.start() - 40) : match.start()].lower()) is not None

    def _ipv6(self, text: str) -> Iterable[Finding]:
        done = 0
        for hint in _IPV6_HINT.finditer(text):
            if hint.start() < done:
                continue
            start = hint.start()
            while start > 0 and text[start - 1] in _IPV6_CHARS:
                start -= 1
            end = hint.end()
            while end < len(text) and (text[end] in _IPV6_CHARS or (text[end] == "." and text[end - 1] != ":")):
                end += 1
            while end > hint.end() and text[end - 1] == ".":
                end -= 1
            done = end
            if _is_ipv6_candidate(text, start, end, text[start:end]) and self._is_personal_ip(text[start:end]):
                yield Finding("pii", "ipv6", start, end, detail="IPv6 address")

    def _is_personal_ip(self, address: str) -> bool:
        return self._cached(("ip", address), lambda: is_personal_ip(address))

    def _is_phone(self, candidate: str, has_context: bool) -> bool:
        return self._cached(
            (candidate, has_context),
            lambda: is_phone_number(candidate, regions=self.phone_regions, has_context=has_context),
        )

    def _cached(self, key: tuple[str, object], compute: Callable[[], bool]) -> bool:
        """Memo of the slow validators (phonenumbers, ipaddress): chat repeats numbers, streams re-scan windows."""
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) >= 4096:
                self._memo.clear()
            value = self._memo[key] = compute()
            return value


def _is_isolated(text: str, start: int, end: int) -> bool:
    """A numeric run glued to a word (v2.1, EMP-123456, 10am, 0x80) is part of an identifier, not PII."""
    before = text[start - 1] if start else " "
    if before.isalnum() or before == "_" or (before in "-." and start > 1 and text[start - 2].isalnum()):
        return False
    after = text[end] if end < len(text) else " "
    if after.isalnum() or after == "_":
        return False
    return not (after in "-._" and end + 1 < len(text) and text[end + 1].isalnum())


def _follows_version_word(text: str, start: int) -> bool:
    """ "version 1.2.3.4", "Release 10.2.0.4", "§ 3.2.1.4": a dotted quad named as a version or section; also
    through a range, "upgrading from 1.2.3.4 to 1.2.4.0", "firmware 3.10.2.7 and 3.10.2.8" (but "traffic from
    10.0.0.5 to 10.0.0.9" names hosts)."""
    # A word that ends a clause ("After the update, 81.2.69.160") does not name the quad: keep its comma.
    words = [w.strip(":()[]'\"") for w in text[max(0, start - 64) : start].lower().split()]
    if any(word in _VERSION_WORDS for word in words[-2:]):
        return True
    end = len(words)
    while end and (words[end - 1] in _RANGE_WORDS or _DOTTED_QUAD.fullmatch(words[end - 1])):
        end -= 1
    return end < len(words) and any(word in _VERSION_WORDS for word in words[max(0, end - 2) : end])


def _card_span(matched: str, start: int) -> tuple[int, int] | None:
    """The span of a valid card number in a _CARD match; a 4-4-4-4-3 match may be 16 digits plus a CVV."""
    digits = matched.replace(" ", "").replace("-", "")
    if is_card_number(digits):
        return start, start + len(matched)
    if len(digits) == 19 and not matched.isdigit() and is_card_number(digits[:16]):
        return start, start + 19
    return None


def _iban_end(text: str, start: int, match_end: int) -> int | None:
    """End of the IBAN starting at `start`: the country's length of characters, spaces not counted."""
    length = IBAN_LENGTHS.get(text[start : start + 2])
    if length is None:
        return None
    compact: list[str] = []
    pos = start
    while pos < match_end and len(compact) < length:
        if text[pos] != " ":
            compact.append(text[pos])
        pos += 1
    if len(compact) < length or (pos < len(text) and text[pos].isalnum()):
        return None
    return pos if is_iban("".join(compact)) else None


def _is_url_credential(text: str, local_start: int) -> bool:
    """``scheme://user:password@host``: the part before @ is a password, not a mailbox."""
    if local_start == 0 or text[local_start - 1] != ":":
        return False
    token_start = max(text.rfind(" ", 0, local_start), text.rfind("\n", 0, local_start)) + 1
    return "://" in text[token_start:local_start]


def _is_scp_remote(text: str, domain_end: int) -> bool:
    """``git@github.com:org/repo.git``: an SSH remote, the colon followed by a path."""
    return domain_end + 1 < len(text) and text[domain_end] == ":" and text[domain_end + 1] not in " \n\t"


def _is_ipv6_candidate(text: str, start: int, end: int, candidate: str) -> bool:
    if candidate.count(":") < 2 or not any(ch.isdigit() for ch in candidate):
        return False
    if sum(1 for group in candidate.split(":") if group) < 2:
        return False
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or before == "_" or after.isalnum() or after == "_":
        return False
    return True
