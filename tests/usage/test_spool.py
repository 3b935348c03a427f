"""Tests for gateway.usage.spool: one locked, append-only JSON-lines file per process."""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.usage.spool import UsageSpool


def is_locked(path: Path) -> bool:
    """Whether some open file description (this process's spool included) holds the flock on `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[UsageSpool]:
    spool = UsageSpool(tmp_path / "spool")  # does not exist yet
    spool.open()
    yield spool
    spool.close()


def test_spool_open_creates_folder_and_a_locked_file_named_for_the_process(spool: UsageSpool) -> None:
    assert re.fullmatch(rf"usage-{os.getpid()}-[0-9a-f]{{12}}\.jsonl", spool.path.name)
    assert sorted(p.name for p in spool.directory.iterdir()) == [spool.path.name]  # no hidden file left
    assert is_locked(spool.path)


def test_spool_append_writes_one_json_line_per_record_at_once(spool: UsageSpool) -> None:
    spool.append({"request_id": "req_1", "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})
    spool.append({"request_id": "req_2", "created_at": datetime(2026, 1, 2, 3, 4, 5)})  # naive: taken as UTC
    # No flush or close: the bytes are in the file (the page cache) as soon as append returns.
    assert lines(spool.path) == [
        {"request_id": "req_1", "created_at": "2026-01-02T03:04:05+00:00"},
        {"request_id": "req_2", "created_at": "2026-01-02T03:04:05+00:00"},
    ]
    assert spool.size() == spool.path.stat().st_size
    spool.sync()


def test_spool_appends_from_threads_stay_whole_lines(spool: UsageSpool) -> None:
    def append_many(thread: int) -> None:
        for i in range(300):
            spool.append({"request_id": f"req_{thread}_{i}", "model": "m" * 200})

    threads = [threading.Thread(target=append_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [line["request_id"] for line in lines(spool.path)]
    assert sorted(ids) == sorted(f"req_{t}_{i}" for t in range(4) for i in range(300))


def test_spool_rotate_only_when_every_byte_was_shipped(spool: UsageSpool) -> None:
    spool.append({"request_id": "req_1"})
    first, size = spool.path, spool.size()
    assert spool.rotate(shipped=size - 1) is False
    assert spool.path == first
    assert spool.rotate(shipped=size) is True
    assert not first.exists()
    assert spool.path != first and is_locked(spool.path)
    spool.append({"request_id": "req_2"})
    assert lines(spool.path) == [{"request_id": "req_2"}]


def test_spool_close_deletes_a_fully_shipped_file(tmp_path: Path) -> None:
    spool = UsageSpool(tmp_path)
    spool.open()
    spool.append({"request_id": "req_1"})
    path = spool.path
    spool.close(shipped=spool.size())
    assert not path.exists()


def test_spool_close_keeps_an_unshipped_file_unlocked_for_the_next_start(tmp_path: Path) -> None:
    spool = UsageSpool(tmp_path)
    spool.open()
    spool.append({"request_id": "req_1"})
    spool.close(shipped=0)
    assert lines(spool.path) == [{"request_id": "req_1"}]
    assert not is_locked(spool.path)


def test_spool_append_when_not_open_raises(tmp_path: Path) -> None:
    spool = UsageSpool(tmp_path)
    with pytest.raises(RuntimeError, match="not open; call UsageSpool.open"):
        spool.append({"request_id": "req_1"})
    spool.open()
    spool.close()
    with pytest.raises(RuntimeError, match="not open"):
        spool.append({"request_id": "req_1"})
