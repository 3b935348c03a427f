"""UsageRow, one group's totals in a usage report, and its renderings for people and tools: table, CSV, JSON.

Apart from the query (report.py), so `gateway usage` renders what the admin API answers without loading the
database layer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import orjson
from pydantic import BaseModel, ConfigDict

from gateway.usage.money import NANOS_PER_USD, usd

_COLUMNS = ("group", "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")


class UsageRow(BaseModel):
    """One group's totals. `group` is a key id, team id, model name, UTC day (YYYY-MM-DD) or prompt version
    (`support-triage@3`).

    Records made without a key, team or prompt are grouped under "" when grouping by that.
    """

    model_config = ConfigDict(frozen=True)

    group: str
    requests: int
    errors: int  # responses with status_code >= 400
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nanos: int  # exact: summed in integer nano-USD
    cost_usd: float  # cost_nanos / 1e9, for display


def render_table(rows: Sequence[UsageRow]) -> str:
    """Aligned columns with a total line, for a terminal."""
    body = [_cells(row, cost=f"{row.cost_usd:.6f}", group=row.group or "(none)") for row in rows]
    if rows:
        total = _total(rows)
        body.append(_cells(total, cost=f"{total.cost_usd:.6f}"))
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *body, strict=True)]
    lines = [_align(list(_COLUMNS), widths)] + [_align(cells, widths) for cells in body]
    if rows:
        lines.insert(-1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[UsageRow]) -> str:
    """CSV with a header line; cost_usd is written exactly, to the nano-dollar."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    writer.writerows(_cells(row, cost=_exact_usd(row.cost_nanos)) for row in rows)
    return buffer.getvalue()


def render_json(rows: Sequence[UsageRow]) -> str:
    """A JSON array of the rows, cost in both nano-USD and USD."""
    return orjson.dumps([row.model_dump() for row in rows], option=orjson.OPT_INDENT_2).decode() + "\n"


def _total(rows: Sequence[UsageRow]) -> UsageRow:
    cost = sum(row.cost_nanos for row in rows)
    return UsageRow(
        group="total",
        requests=sum(row.requests for row in rows),
        errors=sum(row.errors for row in rows),
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
        cached_tokens=sum(row.cached_tokens for row in rows),
        cost_nanos=cost,
        cost_usd=usd(cost),
    )


def _cells(row: UsageRow, *, cost: str, group: str | None = None) -> list[str]:
    counts = (row.requests, row.errors, row.prompt_tokens, row.completion_tokens, row.cached_tokens)
    return [row.group if group is None else group, *(str(count) for count in counts), cost]


def _align(cells: list[str], widths: list[int]) -> str:
    first, *numbers = zip(cells, widths, strict=True)
    return "  ".join([first[0].ljust(first[1]), *(cell.rjust(width) for cell, width in numbers)]).rstrip()


def _exact_usd(nanos: int) -> str:
    dollars, rest = divmod(nanos, NANOS_PER_USD)
    return f"{dollars}.{rest:09d}"
