"""Atomic writes: outputs appear whole or not at all, readable as the umask allows.

Each writer writes to a hidden staging file (or folder) in the destination
folder, flushes it to disk and renames it into place, so a crash, a failed
writer or a Ctrl-C leaves the previous output untouched and no staging debris.
Staging files are created private (``mkstemp``/``mkdtemp`` use 0600/0700 so
nobody reads a half-written output); the result gets the modes a plain
``open``/``mkdir`` would give, 0666/0777 less the process umask, so other users
and services on a shared cluster can read it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored under a lock."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # os.umask can only be read by setting it; the lock keeps our threads from seeing the placeholder.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    """Delete a staging file or folder if it is still there (cleanup must never raise over the real error)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents to disk (folders: where the OS allows opening them)."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and folders on some OSes) refuse fsync; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (children before their folder)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            file = Path(folder) / name
            if file.is_file() and not file.is_symlink():
                _fsync_path(file)
        _fsync_path(Path(folder))


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one rename; returns ``path``.

    The file gets mode ``0o666 & ~umask`` and is fsynced before the rename (and
    its folder after it), so a crash cannot leave an empty file under the final
    name. On any exception, KeyboardInterrupt included, the staging file is
    removed, ``path`` keeps its old contents and the exception propagates.
    """
    return atomic_write_all({path: write})[0]


def atomic_write_all(writes: Mapping[str | Path, Callable[[Path], None]]) -> list[Path]:
    """Write several files as one output: every writer runs first, then all are renamed into place.

    ``writes`` maps each destination to a writer called with its staging path,
    as in :func:`atomic_write`. Only when every writer has succeeded are the
    staging files renamed over their destinations, in the mapping's order, so
    a failing writer or a Ctrl-C leaves every destination as it was and no
    staging debris. The renames are quick but separate: only a crash between
    two of them can leave some files new and others old, so put the file that
    marks an output complete (a summary) last. Returns the destinations.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for destination, write in writes.items():
            path = Path(destination)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            staged.append((Path(tmp), path))
            write(Path(tmp))
            os.chmod(tmp, 0o666 & ~current_umask())
            _fsync_path(Path(tmp))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)  # a no-op for the ones already renamed
        raise
    for folder in dict.fromkeys(path.parent for _, path in staged):
        _fsync_path(folder)  # makes the renames themselves durable
    return [path for _, path in staged]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; on success it replaces ``path`` (a folder) whole.

    On success the staging folder gets mode ``0o777 & ~umask`` (what is written
    inside keeps the modes its writers gave it), its contents are fsynced, the
    old folder is moved aside, the new one renamed in and the old one deleted:
    a reader sees the old or the new folder, never a half-written one. On any
    exception, KeyboardInterrupt included, the staging folder is removed,
    ``path`` is left as it was and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~current_umask())
        _fsync_tree(staging)
        _swap_in(staging, path)
    except BaseException:
        _remove(staging)
        raise
    _fsync_path(path.parent)


def _swap_in(staging: Path, path: Path) -> None:
    """Rename ``staging`` to ``path``, moving an existing ``path`` aside first; puts it back if interrupted."""
    if not path.exists():
        os.replace(staging, path)
        return
    old = path.with_name(f".{path.name}.old")
    _remove(old)  # a leftover from a run killed mid-swap
    os.replace(path, old)
    try:
        os.replace(staging, path)
    except BaseException:
        if not path.exists():
            os.replace(old, path)
        raise
    _remove(old)
