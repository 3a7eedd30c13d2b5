"""Files only their owner may read, private from the first byte.

Keys, the store and its journal, TOTP seals and resume tokens are created
with mode 0600 in folders of mode 0700, by ``os.open`` with the mode (never
a default-mode file narrowed by ``chmod`` afterwards, which leaves a window
in which another account can open it). :func:`loose` finds what is readable
by others, for ``assist doctor``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


SSH_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
"""The key files in ``~/.ssh`` that ssh tries when no key is named, in its order."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing; return it.

    An existing folder keeps its mode (it may be shared on purpose): see
    :func:`loose` for telling the operator.
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def create_private(path: Path, exclusive: bool = False) -> None:
    """Make sure ``path`` exists as a file only its owner can read (0600 from the start).

    An existing file is left as it is (its content and mode).

    Raises:
        FileExistsError: with ``exclusive``, if the file exists.
        OSError: if it cannot be created.
    """
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else 0)
    os.close(os.open(path, flags, FILE_MODE))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, replacing it, readable by its owner only.

    The new content goes to a private temporary file first and is renamed over
    ``path``, so a reader sees the old file or the new one, never half of one.

    Raises:
        OSError: if it cannot be written.
    """
    private_dir(path.parent)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def loose(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """Those of ``paths`` that exist and that other accounts may read: (path, mode)."""
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found


def unreadable(path: Path, what: str, exc: OSError) -> str:
    """Why ``path``, which should be a ``what`` ("key file"), could not be opened, in words."""
    if isinstance(exc, FileNotFoundError):
        return f"{what} {path} does not exist"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a directory, not a {what}"
    return f"cannot read {what} {path}: {exc.strerror}"


def hold_lock(path: Path, *, shared: bool = False) -> int | None:
    """Take the lock of ``path`` (created private) for as long as this process runs.

    A ``shared`` lock may be held by several processes at once, but not while
    one holds it alone. Returns the open descriptor that holds it (close it to
    let go), or ``None`` if another process's lock stands in the way. The
    kernel lets go when the process ends, even by ``kill -9``, so a crash never
    leaves a stale lock behind.

    Raises:
        OSError: if the lock file cannot be created.
    """
    import fcntl  # POSIX only, like the ptys

    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd
