"""Local files written atomically, and a lock under which one process builds what others read.

``atomic_write`` is the project's one writer of local files that must never be seen half
written: dataset caches (``mflow.datasets``), training checkpoints (``mflow.checkpoint``),
``mflow.batch``'s outputs and the local branch of the survey's Parquet store
(``pipelines.results.store``, which
keeps its own temp-name-then-move branch for object stores, where
no ``os.replace`` exists). Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "exclusive_lock"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary name, then rename it into place.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic: readers
    see either no file or a complete one, and two writers racing on the same path each put a
    complete file there (the last rename wins). On any error the temporary file is removed.
    The file is readable by all (mode 0644), as caches may be shared. The data are flushed to
    disk (``fsync``) before the rename, so a crash cannot leave the new name on an empty file.
    The temporary name (``.<name>.<random>.tmp``) starts with ``.``, so folder readers that skip
    hidden files (pyarrow's dataset discovery) never see it.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> atomic_write(p, lambda f: f.write(b"ok")).read_bytes()
        b'ok'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide shared caches from other users
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing) for the block;
    other processes and threads entering it with the same ``path`` wait until it is left.

    The lock file is removed when the block is left, so it does not linger in a cache folder.
    A caller that waited may then hold a lock on a removed file while a newcomer locks a new
    one: use it to build a file once, with the newcomers checking for that file before they
    lock (they find it once the builder is done) and everyone checking again under the lock.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / ".a.lock"
        >>> with exclusive_lock(p):
        ...     p.exists()
        True
        >>> p.exists()
        False
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # removed by an earlier holder: nothing to do
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
    finally:
        os.close(fd)  # releases the lock
