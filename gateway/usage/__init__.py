"""Token counting and pricing from the data files litellm ships, read without importing litellm."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def litellm_package_dir() -> Path:
    """The installed litellm package folder, found without importing litellm (3 s, 200 MB)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("litellm is not installed; its tokenizer files and price map are needed")
    return Path(next(iter(spec.submodule_search_locations)))
