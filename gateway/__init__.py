"""An OpenAI-compatible gateway that authenticates, prices, governs, records and observes every model call."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "create_app"]

if TYPE_CHECKING:
    from gateway.app import create_app


def __getattr__(name: str) -> object:
    # Lazy, so `import gateway` (the CLI, `config check`) does not import FastAPI and friends.
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    raise AttributeError(name)
