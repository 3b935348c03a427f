"""Append-only local spool of usage records, written before the response completes.

Durability: `append` is one write(2) on an O_APPEND descriptor, with no buffering in Python, so when it
returns the record is in the kernel's page cache and survives the process being killed (SIGKILL, the OOM
killer). It is not fsynced per record, which would cost milliseconds: records normally reach the database
within one shipping interval, and while they cannot, the shipper calls `sync()` every interval. So a power
loss or kernel crash may lose about the last interval (half a second) of records.

Ownership: each process appends to its own file, `usage-<pid>-<random>.jsonl` (the audit log's spool, in the
same folder, names its files `audit-...`), and holds an exclusive flock(2) on it while it is live. The kernel
drops the lock when the process exits or dies, so a spool file nobody holds locked belongs to a process that is
gone, and `UsageShipper.ship_leftovers` ships it.
The folder must be on a local filesystem (flock over NFS is not reliable) and, in a container, on a volume
that outlives the container, or a crash loses the unshipped records with the container's filesystem.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from pathlib import Path

import orjson

SPOOL_GLOB = "usage-*.jsonl"  # live and leftover usage spool files; nothing else in the folder matches
# Naive datetimes are taken as UTC: rejecting a record later, at shipping time, would lose it.
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC


class UsageSpool:
    """One process's spool file in `directory`: `open()`, then `append()` per record, `close()` at exit.

    Safe to append from several threads; `rotate` and `close` are meant for the one shipper.
    """

    def __init__(self, directory: Path, *, prefix: str = "usage") -> None:
        self.directory = directory
        self.prefix = prefix  # names the files, so spools of different records can share a folder
        self._fd: int | None = None
        self._path: Path | None = None
        # Guards the descriptor against rotate/close swapping it mid-append; uncontended it costs ~0.1 µs.
        self._lock = threading.Lock()

    @property
    def glob(self) -> str:
        """The pattern matching this spool's live and leftover files (SPOOL_GLOB for usage)."""
        return f"{self.prefix}-*.jsonl"

    @property
    def path(self) -> Path:
        """The live file; raises RuntimeError before `open()`."""
        if self._path is None:
            raise RuntimeError(f"The {self.prefix} spool is not open; call UsageSpool.open() first.")
        return self._path

    def open(self) -> None:
        """Create the folder if needed and a new live file, locked for as long as this spool is open."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._fd is not None:
                raise RuntimeError(f"The {self.prefix} spool is already open on {self._path}.")
            self._fd, self._path = self._create_file()

    def append(self, record: dict[str, object]) -> None:
        """Write one record as one JSON line; raises RuntimeError if not open, OSError if the disk fails."""
        line = memoryview(orjson.dumps(record, option=_DUMPS_OPTIONS))
        with self._lock:
            if self._fd is None:
                raise RuntimeError(f"The {self.prefix} spool is not open; call UsageSpool.open() first.")
            while line:  # a regular file writes everything at once unless the disk is full
                line = line[os.write(self._fd, line) :]

    def size(self) -> int:
        """Bytes in the live file."""
        with self._lock:
            if self._fd is None:
                raise RuntimeError(f"The {self.prefix} spool is not open; call UsageSpool.open() first.")
            return os.fstat(self._fd).st_size

    def sync(self) -> None:
        """fsync the live file, so its records survive a power loss; blocks for milliseconds (use a thread)."""
        with self._lock:
            if self._fd is None:
                return
            fd = os.dup(self._fd)  # fsync outside the lock: appends must not wait on the disk
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rotate(self, *, shipped: int) -> bool:
        """If the live file holds exactly `shipped` bytes (all shipped), delete it and go on in a new file."""
        with self._lock:
            if self._fd is None or os.fstat(self._fd).st_size != shipped:
                return False
            old_fd, old_path = self._fd, self._path
            self._fd, self._path = self._create_file()
        _delete_locked(old_fd, old_path)
        return True

    def close(self, *, shipped: int | None = None) -> None:
        """Stop appending and release the file; delete it if it holds exactly `shipped` bytes.

        A file left behind (not fully shipped) is shipped by the next `ship_leftovers` in this folder.
        """
        with self._lock:
            fd, path = self._fd, self._path
            self._fd = None
            if fd is None:
                return
            if shipped is not None and os.fstat(fd).st_size == shipped:
                _delete_locked(fd, path)
            else:
                os.close(fd)

    def _create_file(self) -> tuple[int, Path]:
        """A new spool file, already locked when it appears under its `<prefix>-*.jsonl` name.

        Created under a hidden name first: another process's ship_leftovers must never see it unlocked,
        or it could ship and delete it before this process takes the lock, and the appends would be lost.
        """
        name = f"{self.prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        hidden = self.directory / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / name
            os.rename(hidden, path)
            _fsync_directory(self.directory)  # the new name itself survives a power loss
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        return fd, path


def _delete_locked(fd: int, path: Path | None) -> None:
    """Unlink, then close: the lock is held until the name is gone, so no one else ships the file."""
    try:
        if path is not None:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
