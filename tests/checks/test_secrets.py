"""SecretsCheck: provider formats, context-found secrets, placeholders, parameters, redaction."""

from __future__ import annotations

import pytest

from gateway.checks.base import redact
from gateway.checks.secrets import SecretsCheck, shannon_entropy

# Made up for these tests; never live credentials.
GITHUB = "ghp_kO7rRu5ykYYqhXHdO2x93CJHLS45gqIO2zVZ"
OPENAI = "sk-LB4pyyRyMX5oZCsSauqrBkL60W4Ycs1jZ43Kjr2ZZJRX6FwI"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYzJDRW1uVSIsImlhdCI6MTcwMDM5MDU4MywibmFtZSI6IkoifQ"
    ".ae2sKjh1Ri4bwvWLa4Sz8kP62tZkhQM1V9rMRdyC5ks"
)


@pytest.fixture(scope="module")
def secrets() -> SecretsCheck:
    return SecretsCheck()


def found(check: SecretsCheck, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in check.scan(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token={GITHUB}", [("github_token", GITHUB)]),  # format beats the generic assignment
        (f"Authorization: Bearer {JWT}", [("jwt", JWT)]),  # format beats the bearer header
        (f"Authorization: Bearer {OPENAI}", [("openai_key", OPENAI)]),
        (
            "Authorization: Bearer reGqwKKHL9iSc6J5Xg3mXBOKOgxYsYYp.",
            [("bearer_token", "reGqwKKHL9iSc6J5Xg3mXBOKOgxYsYYp")],
        ),
        ("aws_access_key_id=AKIAYC3EDQMEVXRVCQUR", [("aws_access_key", "AKIAYC3EDQMEVXRVCQUR")]),
        (
            "aws_secret_access_key = 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",
            [("aws_secret_key", "eAbP0VxNjAe+9i0mYtluYI0KN1gNT11cUzYZAa3u")],
        ),
        ('password: "rMt#Tmv7Yl1RYQ"', [("generic_secret", "rMt#Tmv7Yl1RYQ")]),
    ],
)
def test_secrets_reports_one_finding_per_secret_with_the_value_span(
    secrets: SecretsCheck, text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(secrets, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "pip install scikit-learn; a risk-free task-based plan",
        "OPENAI_API_KEY=sk-... and api_key='sk-your-api-key-here'",
        "Authorization: Bearer <token>; Bearer $TOKEN; Bearer YOUR_ACCESS_TOKEN",
        "password = os.environ['DB_PASSWORD']; api_key: ${KEY}; secret = secrets.token_hex(32)",
        "api_key = https://vault.internal/v1/secret/data/Xk9qLm2Pz",  # a URL says where the key lives
        "password: changeme; password = 'password123'; passwd: ********",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "pk_live_YG6INyNjORSSM4RfncQODOWl is a publishable key",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
        "-----END PUBLIC KEY-----",
        "the file starts with -----BEGIN RSA PRIVATE KEY----- and ends with an END line",
        "eyJ0eXAiOiJKV1QiLCJraWQiOiJ4In0.eyJzdWIiOiIxIn0.Rt_9eejxY8u5YDjUQBNqfBvU7Q7XTOaQ9QDcF6fssIX",  # no alg
    ],
)
def test_secrets_ignores_placeholders_references_and_public_material(secrets: SecretsCheck, text: str) -> None:
    assert found(secrets, text) == []


def test_secrets_private_key_block_spans_header_to_footer(secrets: SecretsCheck) -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "tZUkXe7NVzN067SOqQ26UAKIEWjzkNJSCUY4y3BKM7U1zfmXnHRn77pxNOA0Di5v\n"
        "26MfDCPc4RLQmH8uA+y4j7zMKn84rLisv0vNNojWKCXH6rc0hBl3GDPIF/MMajmo\n"
        "-----END RSA PRIVATE KEY-----"
    )
    text = f"my key:\n{block}\nthanks"
    assert redact(text, secrets.scan(text)) == "my key:\n[REDACTED:private_key]\nthanks"


def test_secrets_truncated_private_key_is_still_found(secrets: SecretsCheck) -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nSjmni7EXMnYmui9uVa1mHQnUWh+o7DX/p/CGhhJKfVkEwMh/4+7pFzN8R91NmZWK"
    assert found(secrets, text) == [("private_key", text)]


def test_secrets_redaction_keeps_the_header_readable(secrets: SecretsCheck) -> None:
    text = "curl -H 'Authorization: Bearer reGqwKKHL9iSc6J5Xg3mXBOKOgxYsYYp' https://api.acme.io"
    assert (
        redact(text, secrets.scan(text))
        == "curl -H 'Authorization: Bearer [REDACTED:bearer_token]' https://api.acme.io"
    )


def test_secrets_detail_shows_at_most_a_prefix(secrets: SecretsCheck) -> None:
    (finding,) = secrets.scan(f"key {OPENAI}")
    assert OPENAI not in finding.detail and OPENAI[4:12] not in finding.detail


def test_secrets_kinds_and_min_entropy_parameters() -> None:
    text = f"token={GITHUB} password: 'bHIifz$g0UIbPf'"
    assert [k for k, _ in found(SecretsCheck(kinds=["github_token"]), text)] == ["github_token"]
    assert [k for k, _ in found(SecretsCheck(min_entropy=3.9), text)] == ["github_token"]
    with pytest.raises(ValueError, match="unknown secret kinds"):
        SecretsCheck(kinds=["ssh_password"])
    with pytest.raises(ValueError, match="min_entropy"):
        SecretsCheck(min_entropy=9)


def test_secrets_offsets_survive_characters_that_lower_to_two(secrets: SecretsCheck) -> None:
    text = f"İstanbul office token={GITHUB}"
    assert found(secrets, text) == [("github_token", GITHUB)]


def test_shannon_entropy_of_uniform_and_constant_strings() -> None:
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


# ------------------------------------------------------------------ rules pinned one by one (issue 21)
AWS_SECRET = "eAbP0VxNjAe+9i0mYtluYI0KN1gNT11cUzYZAa3u"
BEARER = "reGqwKKHL9iSc6J5Xg3mXBOKOgxYsYYp"


def test_secrets_parameter_errors_name_the_bad_value() -> None:
    expected = r"^unknown secret kinds \['ssh_password'\]; expected some of \['anthropic_key'"
    with pytest.raises(ValueError, match=expected):
        SecretsCheck(kinds=["ssh_password"])
    for bad in (-0.5, 8.5):
        with pytest.raises(ValueError, match=f"^min_entropy must be between 0 and 8 bits per character, got {bad}$"):
            SecretsCheck(min_entropy=bad)
    assert found(SecretsCheck(min_entropy=0), f"token={GITHUB}") == [("github_token", GITHUB)]
    assert found(SecretsCheck(min_entropy=8), f"token={GITHUB}") == [("github_token", GITHUB)]  # formats need none


@pytest.mark.parametrize(
    ("text", "kind", "detail"),
    [
        (f"key {GITHUB}", "github_token", "github token (ghp_...)"),
        ("-----BEGIN RSA PRIVATE KEY-----\nSjmni7EXMnYmui9uVa1mHQnUWh+o7DX", "private_key", "rsa private key block"),
        ("-----BEGIN PRIVATE KEY-----\nSjmni7EXMnYmui9uVa1mHQnUWh+o7DX", "private_key", "pkcs8 private key block"),
        (f"aws_secret_access_key = {AWS_SECRET}", "aws_secret_key", "AWS secret access key"),
        (f"Authorization: Bearer {BEARER}", "bearer_token", "bearer token"),
        ('password: "rMt#Tmv7Yl1RYQ"', "generic_secret", "secret assignment"),
    ],
)
def test_secrets_finding_names_its_check_kind_and_detail(
    secrets: SecretsCheck, text: str, kind: str, detail: str
) -> None:
    assert [(f.check, f.kind, f.detail) for f in secrets.scan(text)] == [("secrets", kind, detail)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{GITHUB} leaked", [("github_token", GITHUB)]),  # at the very start
        (f"id x{GITHUB}", []),  # glued to a word: part of another identifier
        (f"id my_{GITHUB}", []),
        (f"id my-{GITHUB}", []),
        ("key AKIAQWERTYUIOPASDFGHJ", []),  # 18 characters after AKIA: not an access key id
        ("key AKIAQWERTYUIOPASDFGH", [("aws_access_key", "AKIAQWERTYUIOPASDFGH")]),  # no digit: still the format
    ],
)
def test_secrets_format_boundaries(secrets: SecretsCheck, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(secrets, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"AWS secret_key = {AWS_SECRET}", [("aws_secret_key", AWS_SECRET)]),  # "aws" nearby
        (f"secret access key: {AWS_SECRET}", [("aws_secret_key", AWS_SECRET)]),  # "access" in the name
        (f"secret_key = {AWS_SECRET}", [("generic_secret", AWS_SECRET)]),  # neither: only an assignment
        (f"aws{' ' * 37}secret_key = {AWS_SECRET}", [("aws_secret_key", AWS_SECRET)]),  # 40 characters before
        (f"aws{' ' * 38}secret_key = {AWS_SECRET}", [("generic_secret", AWS_SECRET)]),  # 41: too far
    ],
)
def test_secrets_aws_secret_key_needs_aws_or_access_nearby(
    secrets: SecretsCheck, text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(secrets, text) == expected


@pytest.mark.parametrize(
    ("template", "value", "kind"),
    [
        ("aws_secret_access_key = {}", AWS_SECRET, "aws_secret_key"),
        ("Authorization: Bearer {}", BEARER, "bearer_token"),
        ('password: "{}"', "rMt#Tmv7Yl1RYQ", "generic_secret"),
    ],
)
def test_secrets_min_entropy_is_inclusive(template: str, value: str, kind: str) -> None:
    text = template.format(value)
    at = shannon_entropy(value)
    assert found(SecretsCheck(min_entropy=at), text) == [(kind, value)]
    assert found(SecretsCheck(min_entropy=at + 0.01), text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('password: "aB3$eF7!"', ["aB3$eF7!"]),  # 8 characters: the shortest
        ('password: "aB3$eF7"', []),
        ('password: "rMt7Tmv7Yl1RYQ"', ["rMt7Tmv7Yl1RYQ"]),  # 3 character classes
        ('password: "rmt7tmv7yl1ryq"', []),  # 2, and shorter than 20
        ('password: "a1b2c3d4e5f6g7h8i9j0"', ["a1b2c3d4e5f6g7h8i9j0"]),  # 2, but 20 long
        ('password: "a1b2c3d4e5f6g7h8i9j"', []),
        ("password=Db_Passw0rd_Main", []),  # unquoted identifier with an underscore: a variable
        ('password="Db_Passw0rd_Main"', ["Db_Passw0rd_Main"]),  # quoted: a value
        ("password=KqvXzmWpLrTsBnHgFdCa", []),  # unquoted identifier without digits: a variable
        ("password=Kq8vXzmWpLrTsBnHgFdC", ["Kq8vXzmWpLrTsBnHgFdC"]),  # with digits: generated
    ],
)
def test_secrets_assignment_value_rules(text: str, expected: list[str]) -> None:
    assert [v for _, v in found(SecretsCheck(kinds=["generic_secret"], min_entropy=0), text)] == expected


@pytest.mark.parametrize(
    ("token", "reported"),
    [
        ("abcd1234abcd1234", True),  # 16 characters, 8 distinct: half
        ("abc1234abc1234ab", False),  # 7 distinct
        ("abcde12345abcde12345abcd", True),  # 24 characters: 10 distinct suffice
        ("abcd12345abcd12345abcd12", False),  # 9 distinct
        (f"{BEARER[:-1]}X", True),  # only the trailing "." is dropped
        ("Ab1Cd2Ef", True),  # 8 characters once the dots are dropped: the shortest
        ("Ab1Cd2E", False),
    ],
)
def test_secrets_bearer_token_needs_enough_distinct_characters(token: str, reported: bool) -> None:
    text = f"Authorization: Bearer {token}{'.' * max(1, 16 - len(token))}"  # the pattern takes 16 or more
    expected = [("bearer_token", token)] if reported else []
    assert found(SecretsCheck(kinds=["bearer_token"], min_entropy=0), text) == expected


@pytest.mark.parametrize(
    ("token", "reported"),
    [
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJmYzJDRW1uVSIsIm4iOiJKIn0.", True),  # header needs "=" padding
        ("eyJhbGciOiJIUzI1NiI.eyJzdWIiOiJmYzJDRW1uVSIsIm4iOiJKIn0.sig", False),  # header is not JSON
    ],
)
def test_secrets_jwt_header_must_decode(secrets: SecretsCheck, token: str, reported: bool) -> None:
    assert found(secrets, f"jwt {token} ok") == ([("jwt", token)] if reported else [])


def test_secrets_upper_case_trigger_after_a_character_that_lowers_to_two(secrets: SecretsCheck) -> None:
    text = f"İstanbul: Authorization: Bearer {BEARER}"
    assert found(secrets, text) == [("bearer_token", BEARER)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'token="{GITHUB} (rotated)"', [("github_token", GITHUB)]),  # a format inside a longer assignment
        (f"{GITHUB} {OPENAI}", [("github_token", GITHUB), ("openai_key", OPENAI)]),  # adjacent: both kept
    ],
)
def test_secrets_overlapping_findings_keep_the_specific_one(
    secrets: SecretsCheck, text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(secrets, text) == expected
