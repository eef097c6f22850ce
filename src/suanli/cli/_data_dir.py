"""The data directory of ``suanli up``: checked before anything is started, and held.

Every way it can be unusable becomes one :class:`~suanli.errors.InvalidInput` that says
what is wrong and what to do (so the CLI prints it and exits 2): a file where a folder
should be, no permission, a read-only or full file system, or another ``suanli up``
already using it (an exclusive ``flock`` on ``up.lock``, released by the kernel when that
process dies, however it dies).

A directory made here is mode 0700; the lock file is 0600.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import suppress
from pathlib import Path
from typing import IO

from suanli.errors import InvalidInput

__all__ = ["LOCK_FILE", "claim_data_dir", "database_problem"]

LOCK_FILE = "up.lock"
# Written and removed once at start: room for the database's first pages, so a full disk
# is reported now, in words, rather than by SQLite halfway through a migration.
_PROBE_BYTES = 256 * 1024
_HINT = "choose another with --data-dir"


def claim_data_dir(path: Path) -> IO[bytes]:
    """Create ``path`` (0700) if needed, check that it takes writes, and lock it for this
    process; the returned file holds the lock until it is closed."""
    path = path.expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create the data directory {path}: {_why(exc, path)}") from None
    if not path.is_dir():
        raise InvalidInput(f"the data directory {path} is a file, not a folder; {_HINT}")
    _probe(path)
    return _lock(path)


def database_problem(exc: BaseException, where: str) -> InvalidInput:
    """The message for a database that could not be opened or migrated at start."""
    orig = getattr(exc, "orig", None) or exc
    return InvalidInput(
        f"cannot open the database ({where}): {orig}. Check that it is reachable and its "
        f"disk is writable and not full, or {_HINT} / --database-url"
    )


def _probe(path: Path) -> None:
    probe = path / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            left = memoryview(b"\0" * _PROBE_BYTES)
            while left:  # a write short of space returns a short count before ENOSPC
                left = left[os.write(fd, left) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidInput(
            f"cannot write in the data directory {path}: {_why(exc, path)}"
        ) from None
    finally:
        with suppress(OSError):  # a read-only file system refuses even this
            probe.unlink(missing_ok=True)


def _lock(path: Path) -> IO[bytes]:
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot create {lock_path}: {_why(exc, path)}") from None
    f = os.fdopen(fd, "r+b")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = f.read().decode(errors="replace").strip()
        f.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise InvalidInput(
            f"another `suanli up`{who} is using the data directory {path}; stop it first, "
            f"or {_HINT}"
        ) from None
    f.truncate(0)
    f.write(str(os.getpid()).encode())
    f.flush()
    return f


def _why(exc: OSError, path: Path) -> str:
    """What went wrong, in words, with what to do about it."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        what = f"{blocker} is a file" if blocker else "a part of the path is a file"
        return f"{what}, not a folder; {_HINT}"
    if exc.errno == errno.EROFS:
        return f"the file system is read-only; {_HINT}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device; free some space or {_HINT}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied; {_HINT}"
    return f"{exc.strerror or exc}; {_HINT}"
