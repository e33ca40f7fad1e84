# -*- test-case-name: tests.test_persistence -*-
"""
The peers file on disk: C{peers.json} and the generation before it,
C{peers.json.bak}.

A save writes C{peers.json.tmp}, fsyncs it, makes the current file the
C{.bak} and renames the new one over it (L{write_atomically}). A load
(L{read_peers_file}) moves a damaged file aside as
C{peers.json.corrupt-<UTC time>} (one over the size limit, unread, as
C{peers.json.too-large-<UTC time>}) and falls back on the C{.bak}, moving an
unusable C{.bak} aside as well (C{peers.json.bak.corrupt-…}, C{.too-large-…},
C{.refused-…}); it leaves a refused C{peers.json} (a newer format, another
network) exactly as it is.

Everything here is blocking: meant for a thread.
"""

from __future__ import annotations

import codecs
import datetime
import errno
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import IO

import attrs
from twisted.logger import Logger

from p2pool.core.files import open_regular_file
from p2pool.pool.persistence.decoder import decode_document, decode_head
from p2pool.pool.persistence.document import (
    RECORD_SECTIONS,
    FileHead,
    IncompatibleFile,
    PeersFileContent,
    PeersFileError,
    Snapshot,
)
from p2pool.pool.persistence.encoder import write_document
from p2pool.pool.persistence.scanner import scan_head

__all__ = [
    "BACKUP_SUFFIX",
    "CORRUPT_INFIX",
    "FileTooLarge",
    "LoadOutcome",
    "REFUSED_INFIX",
    "TOO_LARGE_INFIX",
    "TEMPORARY_SUFFIX",
    "HEAD_READ",
    "file_fingerprint",
    "read_head",
    "read_peers_file",
    "write_atomically",
    "write_snapshot",
]

BACKUP_SUFFIX = ".bak"
#: Bytes of a peers file read at first for its head (L{read_head}); more
#: only when the head is longer.
HEAD_READ = 1 << 20
TEMPORARY_SUFFIX = ".tmp"
CORRUPT_INFIX = ".corrupt-"
TOO_LARGE_INFIX = ".too-large-"
#: Between a file's name and the time it was moved aside when it belongs to
#: another network or a newer format: a C{.bak} of that kind found when
#: C{peers.json} is damaged (L{read_peers_file}).
REFUSED_INFIX = ".refused-"

_log = Logger()


# ---------------------------------------------------------------------------
# Writing


def _sync_directory(directory: str) -> None:
    """
    fsync a directory, so that a rename in it is durable.

    @raise OSError: the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomically(path: str, content: bytes | Callable[[IO[bytes]], None], keep_backup: bool = True) -> int:
    """
    Replace C{path} with new content, whole or not at all: write
    C{path.tmp}, flush and fsync it; when C{keep_backup}, make the file it
    replaces C{path.bak} (a hard link, or a copy where links are not
    possible); rename the temporary file over C{path}; fsync the directory.
    The parent directory is created if missing.

    A crash at any moment leaves C{path} either the old file or the new
    one; C{path.bak} either the generation before or the old file.

    @param content: the bytes, or a function writing them to a file.
    @return: the size written, in bytes.
    @raise OSError: the write failed; C{path} is the old file, unless only
        the final directory fsync failed (the new file is then in place
        but perhaps not yet durable).
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = path + TEMPORARY_SUFFIX
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(content, bytes):
                out.write(content)
            else:
                content(out)
            out.flush()
            size = out.tell()
            os.fsync(out.fileno())
        if keep_backup and os.path.exists(path):
            _replace_backup(path)
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    _sync_directory(directory)
    return size


def _replace_backup(path: str) -> None:
    """
    Make C{path.bak} the current C{path}, atomically.
    """
    backup = path + BACKUP_SUFFIX
    staging = backup + TEMPORARY_SUFFIX
    _remove_quietly(staging)
    try:
        os.link(path, staging)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.EACCES):
            raise
        staging_fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        with open(path, "rb") as source, os.fdopen(staging_fd, "wb") as copy:
            shutil.copyfileobj(source, copy)
            copy.flush()
            os.fsync(copy.fileno())
    os.replace(staging, backup)


def write_snapshot(path: str, snapshot: Snapshot, keep_backup: bool = True) -> int:
    """
    Write C{snapshot} to C{path} atomically (see L{write_atomically}),
    emptying its lists on the way.

    @return: the size of the file written, in bytes.
    @raise OSError: the file could not be written; C{path} is unchanged.
    """
    return write_atomically(path, lambda out: write_document(out, snapshot), keep_backup)


# ---------------------------------------------------------------------------
# Reading


@attrs.frozen
class LoadOutcome:
    """
    What L{read_peers_file} found.

    @ivar status: C{"missing"} (no file: an empty start), C{"loaded"},
        C{"recovered"} (the file was damaged, C{.bak} was loaded instead),
        C{"damaged"} (the file and C{.bak} were both unusable: an empty
        start), or C{"refused"} (a newer format or another network: an
        empty start, the file left alone and not overwritten).
    @ivar content: the decoded content, when loaded or recovered.
    @ivar source: the file the content came from.
    @ivar error: what was wrong with the file (and the backup).
    @ivar moved_to: where the damaged file was moved.
    @ivar refused: C{"format"} or C{"network"} for a refused file.
    @ivar fingerprint: C{(inode, size, mtime_ns)} of a refused file, to
        notice when an operator has moved or replaced it.
    @ivar too_large: the file was over the size limit, and not read.
    @ivar duration: seconds spent reading and decoding.
    """

    status: str
    content: PeersFileContent | None = None
    source: str | None = None
    error: str | None = None
    moved_to: str | None = None
    refused: str | None = None
    fingerprint: tuple[int, int, int] | None = None
    duration: float = 0.0
    too_large: bool = False


def file_fingerprint(path: str) -> tuple[int, int, int] | None:
    """
    C{(inode, size, mtime_ns)} of C{path}, or None when it does not exist.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _aside_name(path: str, now: float, infix: str = CORRUPT_INFIX) -> str:
    """
    A free name to move the damaged C{path} to:
    C{path.corrupt-<UTC time with microseconds>} (or another C{infix}),
    with C{-2}, C{-3} … when taken.
    """
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    candidate = f"{path}{infix}{stamp}"
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}{infix}{stamp}-{n}"
    return candidate


class FileTooLarge(Exception):
    """
    A peers file larger than the size limit: it is not read.
    """

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(
            f"{path} is larger than p2p.max_peers_file_size ({limit} bytes); it was not read "
            "(raise max_peers_file_size to load it)"
        )


def _read(path: str, max_size: int | None = None) -> bytes:
    """
    The bytes of the file at C{path}, at most C{max_size} of them.

    @raise FileTooLarge: the file holds more than C{max_size} bytes (it
        may grow while it is read: at most C{max_size + 1} are read).
    @raise OSError: it cannot be read, or is not a regular file.
    """
    # A FIFO, a device or a directory in the file's place is refused at
    # once (an OSError: moved aside like any damaged file), never waited on.
    with open_regular_file(path) as f:
        if max_size is None:
            return f.read()
        if os.fstat(f.fileno()).st_size > max_size:
            raise FileTooLarge(path, max_size)
        data = f.read(max_size + 1)
    if len(data) > max_size:
        raise FileTooLarge(path, max_size)
    return data


def read_head(path: str, network: str, max_size: int | None = None) -> FileHead | None:
    """
    The head of the peers file at C{path} (its C{format}, C{network},
    C{saved_at} and bans), when it comes before the records, as this
    version writes it; read from the file's first bytes, the rest unread.

    None when there is no usable head: no file, a file over C{max_size},
    unreadable, refused or damaged before its records, or one whose bans
    are not before its records (an older layout); the whole file must
    then be read before the bans are known (L{read_peers_file}, which also
    deals with whatever is wrong with it). Nothing is moved or changed.
    """
    try:
        with open_regular_file(path) as f:
            size = os.fstat(f.fileno()).st_size
            if max_size is not None and size > max_size:
                return None
            decoder = codecs.getincrementaldecoder("utf-8")()
            text = decoder.decode(f.read(HEAD_READ), final=size <= HEAD_READ)
            while True:
                try:
                    members = scan_head(text, RECORD_SECTIONS)
                    break
                except ValueError:
                    rest = f.read() if max_size is None else f.read(max_size)
                    if not rest:
                        return None
                    text += decoder.decode(rest, final=True)
    except (OSError, ValueError):
        return None
    if members is None:
        return None
    try:
        return decode_head(members, network)
    except (PeersFileError, IncompatibleFile):
        return None


def _remove_quietly_logged(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        _log.warn("cannot remove the leftover {path}: {error}", path=path, error=str(e))


def read_peers_file(
    path: str,
    network: str,
    now: float | None = None,
    max_size: int | None = None,
    limits: Mapping[str, int] | None = None,
) -> LoadOutcome:
    """
    Read the peers file at C{path} for C{network}.

      - No file: status C{missing}.
      - A newer format or another network: status C{refused}; the file is
        left alone.
      - Damaged (unreadable, not JSON, truncated, wrong shape): it is
        renamed C{path.corrupt-<UTC time>}; C{path.bak} is loaded when it is
        usable (status C{recovered}, and it is copied back to C{path} so
        that a crash before the next save does not lose it), else status
        C{damaged}, and the unusable C{path.bak} is moved aside as well.
      - Larger than C{max_size} bytes: not read; renamed
        C{path.too-large-<UTC time>} and handled as a damaged file.

    With C{limits} (records by section), records beyond them are not built
    (see L{decode_document}). A temporary file left by a crash during a
    save is removed. Never raises for a problem with the files.
    """
    started = time.perf_counter()
    now = time.time() if now is None else now
    _remove_quietly_logged(path + TEMPORARY_SUFFIX)
    _remove_quietly_logged(path + BACKUP_SUFFIX + TEMPORARY_SUFFIX)
    data: bytes | None = None
    read_error: str | None = None
    infix = CORRUPT_INFIX
    try:
        data = _read(path, max_size)
    except (FileNotFoundError, NotADirectoryError):
        return LoadOutcome("missing", duration=time.perf_counter() - started)
    except OSError as e:
        read_error = f"cannot be read: {e.strerror or e}"
    except FileTooLarge as e:
        read_error, infix = str(e), TOO_LARGE_INFIX
    if data is not None:
        try:
            content = decode_document(data, network, limits)
        except IncompatibleFile as e:
            return LoadOutcome(
                "refused",
                source=path,
                error=str(e),
                refused=e.reason,
                fingerprint=file_fingerprint(path),
                duration=time.perf_counter() - started,
            )
        except PeersFileError as e:
            read_error = str(e)
        else:
            return LoadOutcome("loaded", content, source=path, duration=time.perf_counter() - started)
    del data
    outcome = _recover(path, network, now, read_error, infix, max_size, limits)
    return attrs.evolve(outcome, duration=time.perf_counter() - started, too_large=infix == TOO_LARGE_INFIX)


def _recover(
    path: str,
    network: str,
    now: float,
    read_error: str | None,
    infix: str,
    max_size: int | None,
    limits: Mapping[str, int] | None,
) -> LoadOutcome:
    """
    Move the damaged (or too large) file at C{path} aside as
    C{path<infix><UTC time>} and load C{path.bak} in its place when it is
    usable (copying it back to C{path}): status C{recovered}, else
    C{damaged}. An unusable C{path.bak} is moved aside too, as
    C{path.bak.corrupt-…} (damaged or unreadable), C{path.bak.too-large-…}
    or C{path.bak.refused-…} (another network, a newer format), so that no
    save replaces it.
    """
    moved_to, problem = _move_aside(path, now, infix)
    if problem is not None:
        read_error = f"{read_error}; it could not be moved aside: {problem}"
    backup = path + BACKUP_SUFFIX
    try:
        backup_data = _read(backup, max_size)
    except FileNotFoundError:
        return LoadOutcome("damaged", source=path, error=read_error, moved_to=moved_to)
    except OSError as e:
        unusable, backup_infix = f"cannot be read either: {e.strerror or e}", CORRUPT_INFIX
    except FileTooLarge:
        unusable, backup_infix = "is too large as well", TOO_LARGE_INFIX
    else:
        try:
            content = decode_document(backup_data, network, limits)
        except PeersFileError as e:
            unusable, backup_infix = f"is not usable either: {e}", CORRUPT_INFIX
        except IncompatibleFile as e:
            unusable, backup_infix = f"is not usable either: {e}", REFUSED_INFIX
        else:
            return _restore(path, backup, backup_data, content, read_error, moved_to)
    # Moved aside too: the second save after the start would replace it.
    backup_moved_to, problem = _move_aside(backup, now, backup_infix)
    where = f"moved to {backup_moved_to}" if problem is None else f"it could not be moved aside: {problem}"
    error = f"{read_error}; {backup} {unusable} ({where})"
    return LoadOutcome("damaged", source=path, error=error, moved_to=moved_to)


def _move_aside(path: str, now: float, infix: str) -> tuple[str | None, str | None]:
    """
    Rename the unusable file C{path} to L{_aside_name}, byte for byte.

    @return: the new name and None, or None and why it could not be renamed.
    """
    aside = _aside_name(path, now, infix)
    try:
        os.replace(path, aside)
        _sync_directory(os.path.dirname(path) or ".")
    except OSError as e:
        return None, str(e.strerror or e)
    return aside, None


def _restore(
    path: str, backup: str, backup_data: bytes, content: PeersFileContent, read_error: str | None, moved_to: str | None
) -> LoadOutcome:
    """
    The usable C{backup} (read as C{backup_data}, decoded as C{content})
    copied back to C{path}, the damaged file there moved to C{moved_to}:
    status C{recovered}.
    """
    try:
        write_atomically(path, backup_data, keep_backup=False)
    except OSError as e:
        read_error = f"{read_error}; restoring {backup} as {path} failed: {e.strerror or e}"
    return LoadOutcome("recovered", content, source=backup, error=read_error, moved_to=moved_to)
