"""The environment (GATEWAY_*): the only code that reads it.

`Settings` (settings/model.py, pydantic-settings) holds the process settings that override the config file's; it
loads pydantic and the config models, so it is imported on first use. The CLI's admin commands need only their
connection and read it with `admin_connection`, which imports nothing: they start in a few tens of milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.settings.environ import DEFAULT_URL, admin_connection, environment

if TYPE_CHECKING:
    from gateway.settings.model import Settings

__all__ = ["DEFAULT_URL", "Settings", "admin_connection", "environment"]


def __getattr__(name: str) -> object:
    if name == "Settings":
        from gateway.settings.model import Settings

        return Settings
    raise AttributeError(name)
