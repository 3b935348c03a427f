"""A serving process's malloc arenas: capped at two unless the operator chose, counted by glibc itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.allocator import ARENAS, is_glibc, limit_malloc_arenas

ROOT = Path(__file__).resolve().parents[1]

# Eight threads allocate at once (a barrier keeps them all alive); glibc's malloc_info lists one <heap> per arena.
SCRIPT = """
import ctypes, json, os, sys, tempfile, threading
from gateway.allocator import limit_malloc_arenas

applied = limit_malloc_arenas() if sys.argv[1] == "limit" else False
barrier = threading.Barrier(8)
kept = []

def allocate():
    kept.append(bytearray(1 << 20))  # malloc'd by this thread (above pymalloc's 512 bytes)
    barrier.wait()

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
descriptor, path = tempfile.mkstemp()
os.close(descriptor)
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
heaps = open(path).read().count("<heap nr=")
os.unlink(path)
print(json.dumps({"applied": applied, "arenas": heaps, "env": os.environ.get("MALLOC_ARENA_MAX")}))
"""


def arenas_after_eight_threads(mode: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


pytestmark = pytest.mark.skipif(not is_glibc(), reason="malloc arenas are glibc's")


def test_a_serving_process_keeps_two_arenas_and_hands_the_cap_to_its_workers() -> None:
    assert arenas_after_eight_threads("limit") == {"applied": True, "arenas": ARENAS, "env": "2"}


def test_without_the_cap_each_thread_takes_an_arena() -> None:
    assert arenas_after_eight_threads("none")["arenas"] > ARENAS  # what the cap saves


def test_an_operators_setting_wins() -> None:
    assert arenas_after_eight_threads("limit", MALLOC_ARENA_MAX="4") == {"applied": False, "arenas": 4, "env": "4"}
    environ = {"MALLOC_ARENA_MAX": "8"}
    assert limit_malloc_arenas(environ) is False
    assert environ == {"MALLOC_ARENA_MAX": "8"}
