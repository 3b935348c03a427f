"""PROMETHEUS_MULTIPROC_DIR for `gateway serve --workers N`: a fresh directory per run, removed on exit.

prometheus_client reads the variable itself, once, when it is first imported, so it is set here in the
serving command before any worker process starts (uvicorn's workers are spawned and inherit it). This module
imports nothing of prometheus_client for that reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_metrics(workers: int) -> Iterator[str | None]:
    """Yields the directory the workers share (None for one worker).

    A directory the operator set is used as it is: they may share it on purpose, so emptying it between runs
    is theirs to do. Otherwise a new, empty one is made for this run and removed afterwards, so a restart
    never adds the previous run's counts.
    """
    if os.environ.get(VARIABLE):
        yield os.environ[VARIABLE]
        return
    if workers <= 1:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[VARIABLE] = folder
    try:
        yield folder
    finally:
        del os.environ[VARIABLE]
        shutil.rmtree(folder, ignore_errors=True)
