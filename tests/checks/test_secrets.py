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
