"""The runner's on-disk response cache (default `.gateway-eval-cache/` under the working directory; `--no-cache`).

One file per attempt, keyed by the sha256 of: the target id, the exact request JSON (canonical: sorted keys), the
repeat index (repeats stay independent) and the client's scope (in process: the config file's and the policy set's
sha256, so a changed policy or model mapping misses; over HTTP: the URL). The key does not depend on the suite, so
two suites asking the same thing share an answer. What is kept is the whole `Observed`, governance decisions
included: they are what the gateway did for that request under that policy set. Answers the gateway failed to get
(5xx) are not kept, so a flaky upstream is asked again next run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from gateway.evals.observed import Observed, ToolCall

DEFAULT_DIR = ".gateway-eval-cache"
VERSION = 1  # bump when Observed's fields change meaning


def cache_key(scope: str, target_id: str, request: dict[str, Any], repeat: int) -> str:
    canonical = orjson.dumps(
        {"v": VERSION, "scope": scope, "target": target_id, "request": request, "repeat": repeat},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def to_json(observed: Observed) -> bytes:
    return orjson.dumps(dataclasses.asdict(observed), option=orjson.OPT_NON_STR_KEYS)


def from_json(raw: bytes) -> Observed | None:
    try:
        data = orjson.loads(raw)
        data["tool_calls"] = [ToolCall(**call) for call in data.get("tool_calls") or ()]
        return Observed(**data)
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None  # written by another version, or truncated: a miss


class ResponseCache:
    """Reads and writes `Observed` answers by key; `enabled=False` (--no-cache) reads nothing and writes nothing.
    `read=False` (recording a cassette) writes but never answers from the cache, so every call reaches the provider."""

    def __init__(self, folder: Path | None = None, *, enabled: bool = True, read: bool = True) -> None:
        self.folder = folder or Path.cwd() / DEFAULT_DIR
        self.enabled = enabled
        self.read = read and enabled
        self.hits = 0
        self._made: set[Path] = set()

    def get(self, key: str) -> Observed | None:
        if not self.read:
            return None
        try:
            raw = self._path(key).read_bytes()
        except OSError:
            return None
        observed = from_json(raw)
        if observed is not None:
            observed.cached = True
            self.hits += 1
        return observed

    def put(self, key: str, observed: Observed) -> None:
        if not self.enabled or observed.status >= 500:
            return
        path = self._path(key)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
            ignore = self.folder / ".gitignore"
            if not ignore.exists():  # the cache keeps itself out of git
                ignore.write_text("*\n")
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(to_json(observed))
            temporary.replace(path)  # readers never see half a file
        except OSError:
            pass  # a cache that cannot be written only costs a call next time

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"
