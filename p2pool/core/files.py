# -*- test-case-name: tests.test_files -*-
"""
The node's files, safely against what may be found in their place: reading
only regular files (a FIFO, a device or a directory is refused at once,
never waited on), telling whether a secret file is closed to other users,
and an exclusive lock on the data directory held for the node's life.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import BinaryIO

__all__ = [
    "LOCK_FILE_NAME",
    "DataDirLock",
    "DataDirLocked",
    "NotRegularFileError",
    "open_regular_file",
    "shared_permissions",
]

#: The lock file in the data directory.
LOCK_FILE_NAME = ".lock"

_KINDS = (
    (stat.S_ISDIR, "a directory", errno.EISDIR),
    (stat.S_ISFIFO, "a FIFO (named pipe)", errno.EINVAL),
    (stat.S_ISCHR, "a character device", errno.EINVAL),
    (stat.S_ISBLK, "a block device", errno.EINVAL),
    (stat.S_ISSOCK, "a socket", errno.EINVAL),
)


class NotRegularFileError(OSError):
    """
    A path to read holds something other than a regular file. As an
    C{OSError}, its C{strerror} says what (C{"is a FIFO (named pipe), not a
    regular file"}) and its C{filename} is the path.
    """


def _describe(mode: int) -> tuple[str, int]:
    for test, kind, code in _KINDS:
        if test(mode):
            return kind, code
    return "not a regular file", errno.EINVAL


def open_regular_file(path: str) -> BinaryIO:
    """
    Open C{path} for reading in binary mode if it is a regular file (or a
    symbolic link to one). The file is opened without blocking, so a FIFO
    with no writer is refused at once instead of hanging the caller, and
    the check is made on the file opened, not on the path.

    @raise NotRegularFileError: C{path} is a FIFO, a device, a directory or
        a socket.
    @raise OSError: it cannot be opened (C{FileNotFoundError}, ...).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind, code = _describe(mode)
            raise NotRegularFileError(code, f"is {kind}, not a regular file", path)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def shared_permissions(mode: int) -> int:
    """
    The permission bits of C{mode} that give its group or other users any
    access (C{0o077} at most); 0 for a file closed to them, as a file
    holding a secret key must be (OpenSSH refuses such keys otherwise).
    """
    return stat.S_IMODE(mode) & 0o077


class DataDirLocked(Exception):
    """
    Another process holds the data directory's lock: two nodes must never
    share an identity and a peers file. The message names the directory
    and, when known, the other process.
    """


class DataDirLock:
    """
    An exclusive lock on a data directory: C{flock} on C{<data_dir>/.lock}
    (created mode 0600, the directory mode 0700 when created too), held
    until L{release} or the process exits. The lock file holds the process
    id of its holder, for the message another node gets.
    """

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, LOCK_FILE_NAME)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """
        Whether this object holds the lock.
        """
        return self._fd is not None

    def acquire(self) -> None:
        """
        Take the lock, without waiting.

        @raise DataDirLocked: another process (or another L{DataDirLock}
            in this one) holds it.
        @raise OSError: the directory or the lock file cannot be made or
            opened (C{strerror} says why, C{filename} names it).
        """
        if self._fd is not None:
            return
        if self.data_dir:
            try:
                os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
            except FileExistsError:
                # exist_ok: it exists, and is not a directory.
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", self.data_dir) from None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind, code = _describe(mode)
                raise NotRegularFileError(code, f"is {kind}, not a regular file", self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                by = f" (process {holder})" if holder else ""
                raise DataDirLocked(
                    f"data directory {self.data_dir} is in use by another p2pool node{by}; "
                    f"each node needs a data_dir of its own"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """
        Give the lock up (the lock file stays, empty of meaning).
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_holder(fd: int) -> str:
    """
    The process id written in a lock file, or C{""}.
    """
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
