"""Memory a request used goes back to the operating system when the request ends.

glibc keeps freed memory for reuse: big buffers it once handed out with mmap raise its mmap threshold (so later
ones come from the heap and stay), and each thread's arena keeps its own free pages. After one 200 MB decode a
warm Lambda container would carry that into every later invocation, and the local server's threads would each
keep a share. So, at start-up, ``configure_allocator`` fixes the mmap threshold (buffers over 128 kB are mapped
and unmapped, as Pillow's image blocks and numpy's arrays are), caps the arenas at two, and lowers the trim
threshold; template.yaml sets the same through glibc's environment variables for Lambda. After each request
``release`` asks glibc to return free pages (``malloc_trim``) when the resident set has grown past its floor.
Elsewhere than Linux with glibc, both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from typing import Any

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 128 * 1024
ARENA_MAX = 2
# Resident growth over the floor that makes a trim worth its cost (it walks the heap: ~1 ms)
TRIM_SLACK = 16 * 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only: musl and macOS have no mallopt/malloc_trim
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def configure_allocator() -> bool:
    """Fixes glibc's mmap and trim thresholds and caps its arenas; returns whether it could."""
    libc = _libc()
    if libc is None:
        return False
    for parameter, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_ARENA_MAX, ARENA_MAX),
    ):
        libc.mallopt(parameter, value)
    return True


def rss_bytes() -> int:
    """This process's resident set size, or 0 where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


class _Releaser:
    def __init__(self) -> None:
        self.floor = 0
        self.lock = threading.Lock()

    def release(self) -> None:
        resident = rss_bytes()
        if not resident or resident < self.floor + TRIM_SLACK:
            self.floor = min(self.floor, resident) if self.floor else resident
            return
        libc = _libc()
        if libc is not None and self.lock.acquire(blocking=False):
            try:
                libc.malloc_trim(0)
            finally:
                self.lock.release()
        self.floor = rss_bytes()


release = _Releaser().release
