"""Ships spooled usage records to the database in batches.

Never lost, never counted twice: a record leaves the spool only after the transaction holding it commits,
and every insert is `ON CONFLICT (request_id) DO NOTHING`, so shipping a line again (after a failed batch,
a crash between commit and bookkeeping, a restart) inserts nothing. The shipped offset of the live file is
kept in memory only; idempotent inserts are what make restarts safe.

Lines that can never be inserted (not JSON, missing fields, values the database refuses) are set aside in
`rejected-usage.jsonl` beside the spool files and logged, so one bad record cannot block the rest.

Other records reuse this machinery with their own spool prefix: a subclass overrides `_parse_line` (one spool
line to one row) and `_execute` (insert a batch, returning how many rows were new); see gateway/audit/log.py.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticUndefined
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from gateway.storage.db import Database
from gateway.storage.tables import UsageRecord
from gateway.usage.insert import BulkInsert, statement_pages
from gateway.usage.pricing import nanos, usd
from gateway.usage.spool import UsageSpool

logger = logging.getLogger(__name__)

REJECTED_FILE = "rejected-usage.jsonl"  # outside the spool's glob: never shipped again by ship_leftovers
ROTATE_BYTES = 8 * 1024 * 1024
LEFTOVER_SCAN_S = 60.0  # run() also ships the files of sibling processes that died since startup
_PARSE_SLICE = 64  # spool lines parsed between two yields to the event loop
# ~400 usage lines: a chunk's parsed rows are ~1 MB; 4 MiB chunks peaked at 30 MB of dicts under load.
_READ_CHUNK_BYTES = 256 * 1024
# Bad data, not an outage: retrying the same batch would fail forever, so its rows go one by one instead.
_DATA_ERRORS = (IntegrityError, DataError)
_INT64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]  # SQLite raises a bare OverflowError beyond this


def _as_utc(value: datetime) -> datetime:
    # Naive is taken as UTC, as the spool writes it; UTCDateTime would refuse it at insert time, every time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


_UTC_DATETIME = Annotated[datetime, AfterValidator(_as_utc)]


def _line_fields() -> dict[str, Any]:
    """UsageRecord's columns as pydantic fields, so a column added there is shipped without a change here."""
    fields: dict[str, Any] = {}
    for name, info in UsageRecord.model_fields.items():
        if name == "id":
            continue
        annotation: Any = info.annotation
        if annotation is int:
            annotation = _INT64
        elif annotation is datetime:
            annotation = _UTC_DATETIME
        if info.default_factory is not None:
            fields[name] = (annotation, Field(default_factory=info.default_factory))
        else:
            fields[name] = (annotation, ... if info.default is PydanticUndefined else info.default)
    return fields


# A plain pydantic model validates a line in ~3 µs, the SQLModel table class in ~30 µs.
_UsageLine: type[BaseModel] = create_model("_UsageLine", __config__=ConfigDict(extra="ignore"), **_line_fields())


@dataclass
class _Cursor:
    """A spool file being read: its descriptor and how far it has been shipped."""

    path: Path
    fd: int
    offset: int = 0


@dataclass
class _Chunk:
    """The complete lines read from one cursor: rows to insert, and where each one's line ends."""

    rows: list[dict[str, object]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    rejected: list[tuple[int, bytes, str]] = field(default_factory=list)  # (end, line, reason)
    end: int = 0


class UsageShipper:
    """Moves usage records from a UsageSpool (and leftover spools in its folder) into usage_records."""

    def __init__(
        self,
        db: Database,
        spool: UsageSpool,
        *,
        interval_s: float = 0.5,
        batch_size: int = 1000,
        rotate_bytes: int = ROTATE_BYTES,
    ) -> None:
        self._db = db
        self._spool = spool
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._rotate_bytes = rotate_bytes
        self._insert = BulkInsert(db.engine.dialect)
        self._live: _Cursor | None = None
        self._lock = anyio.Lock()  # run(), flush() and ship_leftovers() never ship the same bytes at once
        self._failing = False

    async def ship_leftovers(self) -> int:
        """Ship and delete every spool file in the folder that no live process holds; returns rows inserted.

        These are the files of processes that exited or crashed. A torn last line (no newline: the process
        died mid-write) is dropped with its file. Raises SQLAlchemyError if the database fails; the files
        then stay for the next attempt. Call it at startup, before reading usage totals from the database.
        """
        async with self._lock:
            inserted = 0
            for path in sorted(self._spool.directory.glob(self._spool.glob)):
                fd = _take_leftover(path)
                if fd is None:
                    continue  # live: its process holds the lock (this process's own file included)
                try:
                    cursor = _Cursor(path, fd)
                    shipped = await self._ship_until(cursor, os.fstat(fd).st_size)
                    path.unlink(missing_ok=True)  # while still locked, so no one else ships it again
                finally:
                    os.close(fd)
                logger.info("Shipped %d leftover %s records from %s.", shipped, self._spool.prefix, path)
                inserted += shipped
            return inserted

    async def flush(self) -> int:
        """Ship every record appended to the live spool so far; returns rows inserted.

        Raises SQLAlchemyError if the database fails: nothing is lost, the records stay spooled and the next
        flush (or run's next interval, or ship_leftovers after a restart) ships them.
        """
        async with self._lock:
            cursor = self._live_cursor()
            try:
                inserted = await self._ship_until(cursor, self._spool.size())
            except (SQLAlchemyError, OSError):
                # Shipped records are as durable as the database; these are not, until fsynced.
                await anyio.to_thread.run_sync(self._spool.sync)
                raise
            if cursor.offset >= self._rotate_bytes and self._spool.rotate(shipped=cursor.offset):
                self._close_live()
            return inserted

    async def run(self) -> None:
        """Ship new records every interval_s until cancelled; a failure logs a warning and retries next time."""
        next_scan = anyio.current_time() + LEFTOVER_SCAN_S
        while True:
            await anyio.sleep(self._interval_s)
            try:
                await self.flush()
                if anyio.current_time() >= next_scan:
                    next_scan = anyio.current_time() + LEFTOVER_SCAN_S
                    await self.ship_leftovers()
            except (SQLAlchemyError, OSError) as exc:
                self._log_failure(exc)
            else:
                if self._failing:
                    self._failing = False
                    logger.warning(
                        "Shipping %s records works again; the spooled backlog is shipped.", self._spool.prefix
                    )

    async def close(self) -> None:
        """At shutdown: a last flush, then close the spool, deleting its file when everything was shipped."""
        try:
            await self.flush()
        except (SQLAlchemyError, OSError) as exc:
            message = "%s records stay spooled in %s for the next start: %s"
            logger.warning(message, self._spool.prefix.capitalize(), self._spool.path, _describe(exc))
        live = self._live
        self._spool.close(shipped=live.offset if live is not None and live.path == self._spool.path else None)
        self._close_live()

    def _log_failure(self, exc: Exception) -> None:
        # One warning per outage, not one per interval; the records wait in the spool meanwhile.
        log = logger.debug if self._failing else logger.warning
        self._failing = True
        message = "Shipping %s records failed; they stay spooled and are retried every %.1f s: %s"
        log(message, self._spool.prefix, self._interval_s, _describe(exc))

    def _live_cursor(self) -> _Cursor:
        path = self._spool.path
        if self._live is None or self._live.path != path:
            self._close_live()
            self._live = _Cursor(path, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        return self._live

    def _close_live(self) -> None:
        if self._live is not None:
            os.close(self._live.fd)
            self._live = None

    async def _ship_until(self, cursor: _Cursor, stop: int) -> int:
        """Ship the complete lines of `cursor` up to byte `stop`, advancing its offset batch by batch."""
        inserted = 0
        while cursor.offset < stop:
            chunk = await _read_chunk(cursor.fd, cursor.offset, self._parse_line)
            if chunk.end == cursor.offset:
                break  # only a partial line is left: still being written, or torn by a crash
            inserted += await self._ship_chunk(cursor, chunk)
        return inserted

    async def _ship_chunk(self, cursor: _Cursor, chunk: _Chunk) -> int:
        inserted = 0
        for start in range(0, len(chunk.rows), self._batch_size):
            batch = chunk.rows[start : start + self._batch_size]
            inserted += await self._insert_batch(batch)
            self._advance(cursor, chunk, chunk.ends[start + len(batch) - 1])
        self._advance(cursor, chunk, chunk.end)
        return inserted

    def _advance(self, cursor: _Cursor, chunk: _Chunk, offset: int) -> None:
        """Move past committed lines, setting aside the rejected lines passed on the way (each once)."""
        while chunk.rejected and chunk.rejected[0][0] <= offset:
            _, line, reason = chunk.rejected.pop(0)
            self._reject(line, reason)
        cursor.offset = offset

    async def _insert_batch(self, rows: Sequence[dict[str, object]]) -> int:
        try:
            return await self._execute(rows)
        except _DATA_ERRORS as exc:
            if len(rows) == 1:
                self._reject(orjson.dumps(rows[0]), _describe(exc))
                return 0
        inserted = 0
        for row in rows:  # find the rows the database refuses; insert the others
            inserted += await self._insert_batch([row])
        return inserted

    def _parse_line(self, line: bytes) -> dict[str, object]:
        """One spool line as column values; raises ValueError (ValidationError included) for a line to set aside."""
        return _row(line)

    async def _execute(self, rows: Sequence[dict[str, object]]) -> int:
        insert, inserted = self._insert, 0
        async with self._db.engine.begin() as connection:
            # Pages of at most 64 rows: converting a row takes ~3 µs on the event loop (and the driver binds it with
            # the GIL held), so a 1,000-row batch at once held requests up for ~3 ms (added p99 at one client).
            for page in statement_pages(rows):
                result = await connection.exec_driver_sql(insert.sql(len(page)), insert.params(page))
                inserted += max(result.rowcount, 0)
        return inserted

    def _reject(self, line: bytes, reason: str) -> None:
        path = self._spool.directory / f"rejected-{self._spool.prefix}.jsonl"  # REJECTED_FILE for usage
        message = "%s record cannot be stored, set aside in %s: %s: %s"
        logger.error(message, self._spool.prefix.capitalize(), path, reason, line[:500])
        entry = {"rejected_at": datetime.now(UTC), "reason": reason, "line": line.decode("utf-8", "replace")}
        with path.open("ab") as file:
            file.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))


def _describe(exc: Exception) -> str:
    """The driver's own message: SQLAlchemy's adds the statement and up to ten rows of parameters."""
    return str(exc.orig).strip() if isinstance(exc, DBAPIError) else str(exc)


def _take_leftover(path: Path) -> int | None:
    """A locked descriptor on `path` if no live process holds it, else None.

    flock(2), not fcntl/lockf: those locks belong to the process, and closing any descriptor of the file
    (as this does for this process's own live file) would silently drop the lock the spool holds on it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # shipped and deleted by another process meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink > 0:  # not deleted between our open and our lock
            return fd
    except BlockingIOError:
        pass
    os.close(fd)
    return None


async def _read_chunk(fd: int, offset: int, parse: Callable[[bytes], dict[str, object]]) -> _Chunk:
    """The complete lines from `offset`, up to about 256 KiB, parsed and validated.

    Parsed on the event loop, yielding to it every _PARSE_SLICE lines (~0.3 ms of work): requests wait at most
    one slice. A worker thread parsing a whole chunk held the GIL for tens of ms in 5 ms switch intervals, and
    every request meanwhile waited for it (added p99 at one client 3.7 ms, bench/RESULTS.md).
    """
    size = _READ_CHUNK_BYTES
    while True:
        data = os.pread(fd, size, offset)
        cut = data.rfind(b"\n") + 1
        if cut or len(data) < size:
            break
        size *= 2  # one line longer than the chunk: read more rather than stall on it
    chunk = _Chunk(end=offset + cut)
    end = offset
    for number, line in enumerate(data[:cut].split(b"\n")[:-1], start=1):
        end += len(line) + 1
        if number % _PARSE_SLICE == 0:
            await anyio.lowlevel.checkpoint()
        if not line.strip():
            continue
        try:
            chunk.rows.append(parse(line))
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
            chunk.rejected.append((end, line, reason))
            continue
        except ValueError as exc:  # a cost_usd that is not a finite number
            chunk.rejected.append((end, line, str(exc)))
            continue
        chunk.ends.append(end)
    return chunk


def _row(line: bytes) -> dict[str, object]:
    """One spool line as column values; cost_nanos is the truth, cost_usd its float copy."""
    record = _UsageLine.model_validate_json(line)
    row = dict(record.__dict__)  # model_dump's result for these flat fields, 1.5 µs faster per line
    if "cost_nanos" in record.model_fields_set:
        row["cost_usd"] = usd(row["cost_nanos"])
    else:
        row["cost_nanos"] = nanos(row["cost_usd"])
    return row
