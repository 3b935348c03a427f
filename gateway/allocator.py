"""glibc malloc arenas of a serving process: two, unless the operator chose (`MALLOC_ARENA_MAX`).

glibc gives every thread that allocates its own arena, up to 8 per core, and an arena keeps the pages it has
touched. A gateway process has a few such threads (two SQLite connections, libuv's pool): two arenas cost
2-9 MB less RSS under load (116-144 -> 114-135 MB over the cells of 1-100 clients, bench/RESULTS.md) and no
measurable CPU. This module writes the environment (STYLE gives reading it to settings.py): worker processes
inherit the cap only through MALLOC_ARENA_MAX, which glibc reads as a process starts.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping

ARENAS = 2
M_ARENA_MAX = -8  # malloc.h


def is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # not a glibc system (musl, macOS)
        return False


def limit_malloc_arenas(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Cap arenas at ARENAS for this process (mallopt) and for the workers it starts (their environment).

    Does nothing where the operator set MALLOC_ARENA_MAX (glibc read it at start) or malloc is not glibc's.
    Returns whether the cap was applied.
    """
    if "MALLOC_ARENA_MAX" in environ or not is_glibc():
        return False
    environ["MALLOC_ARENA_MAX"] = str(ARENAS)
    return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, ARENAS))
