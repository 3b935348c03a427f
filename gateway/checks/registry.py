"""Check type names as written in policy YAML, mapped to the built-in classes and to entry-point plugins."""

from __future__ import annotations

from importlib.metadata import entry_points

from gateway.checks.injection import InjectionCheck
from gateway.checks.lists import KeywordCheck, RegexCheck, TopicCheck
from gateway.checks.pii import PIICheck
from gateway.checks.secrets import SecretsCheck

ENTRY_POINT_GROUP = "gateway.checks"

BUILTIN_CHECKS: dict[str, type] = {
    "pii": PIICheck,
    "secrets": SecretsCheck,
    "injection": InjectionCheck,
    "regex": RegexCheck,
    "keywords": KeywordCheck,
    "topics": TopicCheck,
}


def load_entry_point_check(name: str) -> type:
    """The check class a package registers under `name` in the ``gateway.checks`` entry point group.

    A plugin declares, in its pyproject.toml::

        [project.entry-points."gateway.checks"]
        profanity = "acme_checks.profanity:ProfanityCheck"

    and its class follows the Check protocol (a `name` and a pure, synchronous ``scan(text)``); it is
    built with the guardrail's `params` as keyword arguments, like a built-in.

    Raises LookupError when no installed package registers `name` (the message lists those that do),
    and TypeError when the object registered is not a class with a ``scan`` method. Errors raised while
    importing the plugin's module propagate unchanged.
    """
    found = entry_points(group=ENTRY_POINT_GROUP)
    matches = [ep for ep in found if ep.name == name]
    if not matches:
        available = sorted({ep.name for ep in found})
        raise LookupError(
            f"no check named {name!r}: not built in ({', '.join(sorted(BUILTIN_CHECKS))}) and no installed "
            f"package registers it in the {ENTRY_POINT_GROUP!r} entry point group "
            f"(registered: {', '.join(available) or 'none'})"
        )
    loaded = matches[0].load()
    if not isinstance(loaded, type) or not callable(getattr(loaded, "scan", None)):
        raise TypeError(
            f"entry point {name!r} ({matches[0].value}) must name a class with a scan(text) method, got {loaded!r}"
        )
    return loaded
