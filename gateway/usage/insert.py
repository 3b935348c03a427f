"""The shipper's SQL: usage records as one multi-row INSERT per page, with a bounded number of statement shapes.

`statement_pages` also pages the audit log's batches (gateway/audit/log.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from sqlalchemy.engine import Dialect

from gateway.storage.tables import UsageRecord

T = TypeVar("T")


def statement_pages(rows: Sequence[T], *, most: int = 64) -> Iterator[Sequence[T]]:
    """rows in slices of `most` rows, then powers of two, largest first (100 rows: 64, 32, 4).

    A batch becomes one multi-row statement (RETURNING makes SQLAlchemy render `VALUES (...), (...)`; an IN
    list renders one placeholder per id), so every batch length is a distinct SQL text, and sqlite3 keeps the
    last 128 prepared texts per connection: ~0.5 MB each at 300 rows of usage. Batch lengths vary with the
    load, so RSS grew by ~30 MB per 100k requests until 128 sizes were cached (bench/RESULTS.md, soak). Powers
    of two up to 64 leave 7 shapes per statement. Small pages also keep each statement's rendering and
    parameter processing (on the event loop) well under a millisecond, so requests never wait long behind it.
    """
    start = 0
    while start < len(rows):
        size = min(most, 1 << ((len(rows) - start).bit_length() - 1))
        yield rows[start : start + size]
        start += size


class BulkInsert:
    """INSERT ... VALUES (...), (...) ON CONFLICT (request_id) DO NOTHING as the driver's own SQL, a page per statement.

    Driver SQL, not SQLAlchemy's (its multi-row INSERT ... RETURNING cost ~19 µs more CPU per record), with one text
    per page length: pages from `statement_pages`, so 7 texts in all, prepared once each per connection. The values
    are converted by the columns' own bind processors, as SQLAlchemy would, so the rows are stored exactly as through
    the ORM; a processor's answer for None is computed once (JSON's `null` alone took ~4 µs per row).

    A statement per page, not executemany per page: sqlite3's executemany releases and retakes the GIL around every
    row, and each time the event loop had woken meanwhile the two threads traded the GIL: 1.5 context switches per
    request more than without shipping, at one client. The statement's row count is the number of new rows.
    """

    def __init__(self, dialect: Dialect) -> None:
        if dialect.name not in ("postgresql", "sqlite"):
            raise ValueError(
                f"Usage records cannot be shipped to a {dialect.name!r} database; use SQLite or PostgreSQL."
            )
        table = UsageRecord.__table__  # type: ignore[attr-defined]
        columns = [column for column in table.columns if column.name != "id"]
        quote = dialect.identifier_preparer.quote
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        self._head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in columns)}) VALUES "
        self._tail = f" ON CONFLICT ({quote('request_id')}) DO NOTHING"
        self._values = f"({', '.join([marker] * len(columns))})"
        self._sql: dict[int, str] = {}
        self.names = tuple(column.name for column in columns)
        converters = []
        for i, column in enumerate(columns):
            converter = column.type.dialect_impl(dialect).bind_processor(dialect)
            if converter is not None:
                converters.append((i, converter, converter(None)))
        self.converters = tuple(converters)

    def sql(self, rows: int) -> str:
        """The statement for a page of `rows` rows."""
        text = self._sql.get(rows)
        if text is None:
            text = self._sql[rows] = self._head + ", ".join([self._values] * rows) + self._tail
        return text

    def params(self, rows: Sequence[dict[str, object]]) -> tuple[object, ...]:
        """The page's values, row after row, in the statement's column order: one tuple, one execution (a list
        would be taken for executemany's list of rows)."""
        names, converters = self.names, self.converters
        flat: list[object] = []
        for row in rows:
            values = [row[name] for name in names]
            for i, converter, none in converters:
                value = values[i]
                values[i] = none if value is None else converter(value)
            flat += values
        return tuple(flat)
