"""The process environment as the gateway reads it: a snapshot for config files, and the admin commands' connection."""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_URL = "http://127.0.0.1:4000"  # where the CLI's admin commands find a running gateway


def environment() -> Mapping[str, str]:
    """A snapshot of the process environment, for ${VAR} interpolation in config files."""
    return dict(os.environ)


def admin_connection() -> tuple[str, str | None]:
    """(GATEWAY_URL or the default, GATEWAY_MASTER_KEY or None), matched case-insensitively as Settings does."""
    found = {name.upper(): value for name, value in os.environ.items() if name.upper().startswith("GATEWAY_")}
    return found.get("GATEWAY_URL") or DEFAULT_URL, found.get("GATEWAY_MASTER_KEY") or None
