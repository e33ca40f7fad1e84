# -*- test-case-name: tests.test_memory -*-
"""
Returning freed memory to the system (C{memory_trim_interval}).

glibc's malloc keeps the memory a process frees inside its heaps: only a
free block at the very top of a heap goes back to the system, and a small
block still in use above a freed region keeps the whole region resident.
A node's traffic frees many such regions (read buffers, TLS records, send
queues that filled while the reactor was busy), so its RSS follows the
highest amount of memory it ever had in flight, not what it uses.
C{malloc_trim(0)} gives every free page of every heap back to the system.

Each pool calls L{trim_freed_memory} every C{memory_trim_interval}; the
pools of one process share it (a trim less than an interval after the last
one, by any pool, is skipped). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

__all__ = ["trim_freed_memory", "trimming_available"]


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


_malloc_trim = _find_malloc_trim()
#: When (time.monotonic) a pool of this process last trimmed.
_last_trim: list[float] = []


def trimming_available() -> bool:
    """
    Whether this process's C library can return freed memory (glibc).
    """
    return _malloc_trim is not None


def trim_freed_memory(min_gap: float = 0.0, now: Callable[[], float] = time.monotonic) -> bool:
    """
    Give the memory this process freed back to the system, unless the last
    trim of any pool was less than C{min_gap} seconds ago; whether it ran.
    """
    if _malloc_trim is None:
        return False
    t = now()
    if _last_trim and t - _last_trim[0] < min_gap:
        return False
    _malloc_trim(0)
    _last_trim[:] = [now()]
    return True
