"""Dataset files of eval suites: the rows a suite's `template` instantiates, read from JSONL, CSV or YAML.

- JSONL (`.jsonl`, `.ndjson`): one JSON object a line; blank lines are skipped; errors name the line.
- CSV (`.csv`): a header row, then one row a line; every value is a string (an empty cell is "").
- YAML (`.yaml`, `.yml`) or JSON (`.json`): a list of mappings; errors name the item's line.
A row's `id` field (when present and not empty) is its case id; otherwise the id is `<file stem>-<8 hex of the
sha256 of the row's canonical JSON>`, so ids stay the same across runs for as long as the row does. Two rows with
the same id, a file that is missing or has no rows, and a row that is not a mapping are errors.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".json": "yaml"}
ID_FIELD = "id"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DatasetError(ValueError):
    """A dataset file that cannot be read into rows; `line` is the 1-based line at fault, when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the row starts in its file (1-based)
    case_id: str
    values: dict[str, Any]  # the row's fields but `id`: the case's variables


def row_id(stem: str, row: dict[str, Any]) -> str:
    """The id of a row without an `id` field: stable for as long as the row's content is."""
    canonical = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return f"{stem}-{hashlib.sha256(canonical).hexdigest()[:8]}"


def read_rows(path: Path) -> list[Row]:
    """The rows of a dataset file, in file order; raises DatasetError naming the line at fault."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(f"unsupported dataset format {path.suffix or '(no suffix)'!r}: use .jsonl, .csv or .yaml")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DatasetError("no such dataset file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the dataset: {exc}") from None
    reader = {"jsonl": _jsonl, "csv": _csv, "yaml": _yaml}[kind]
    rows = _identify(path.stem, reader(text))
    if not rows:
        raise DatasetError("the dataset has no rows")
    return rows


def _identify(stem: str, raw: list[tuple[int, object]]) -> list[Row]:
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for line, data in raw:
        if not isinstance(data, dict):
            raise DatasetError(f"a row must be a mapping of field: value, got {_kind(data)}", line)
        values = dict(data)
        given = values.pop(ID_FIELD, None)
        if given is None or given == "":  # an empty cell of a CSV id column: no id
            case_id = row_id(stem, data)
        elif isinstance(given, str | int) and not isinstance(given, bool) and str(given).strip():
            case_id = str(given).strip()
        else:
            raise DatasetError(f"the id field must be a non-empty string or a number, got {_kind(given)}", line)
        if case_id in seen:
            same = " (the rows are identical: give them an id field)" if not given else ""
            raise DatasetError(f"duplicate case id {case_id!r}, first at line {seen[case_id]}{same}", line)
        seen[case_id] = line
        rows.append(Row(line, case_id, values))
    return rows


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _jsonl(text: str) -> list[tuple[int, object]]:
    rows: list[tuple[int, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except ValueError as exc:
            raise DatasetError(f"invalid JSON ({exc})", number) from None
    return rows


def _csv(text: str) -> list[tuple[int, object]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        names = [name.strip() for name in header]
        if any(not name for name in names):
            raise DatasetError("the header row has an empty column name", 1)
        duplicate = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if duplicate is not None:
            raise DatasetError(f"the header row names column {duplicate!r} twice", 1)
        rows: list[tuple[int, object]] = []
        start = reader.line_num + 1
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                start = reader.line_num + 1
                continue
            if len(cells) != len(names):
                raise DatasetError(f"{len(cells)} cells but the header has {len(names)} columns", start)
            rows.append((start, dict(zip(names, cells, strict=True))))
            start = reader.line_num + 1
        return rows
    except csv.Error as exc:
        raise DatasetError(f"invalid CSV ({exc})", reader.line_num or None) from None


def _yaml(text: str) -> list[tuple[int, object]]:
    try:
        root = yaml.compose(text, Loader=LOADER)  # the items' lines, then the data: parsing twice is cheap in C
        data = yaml.load(text, Loader=LOADER)  # a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DatasetError(f"invalid YAML ({getattr(exc, 'problem', exc)})", mark.line + 1 if mark else None) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise DatasetError(f"expected a list of rows (mappings), got {_kind(data)}", 1)
    return [(node.start_mark.line + 1, item) for node, item in zip(root.value, data, strict=True)]
