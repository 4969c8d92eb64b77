"""Atomic file writes: a temp file in the same directory, fsync, then rename over the target.

The temp file is ``.<target name>.<random>.tmp`` beside the target (:func:`is_temp_name`); a writer
killed between creating and renaming it leaves it behind, and :func:`remove_stray_temps` clears
such files from a directory tree whose writer is known to be gone (a run directory whose lock was
just taken).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]+\.tmp")  # mkstemp's random part: lower-case letters, digits, "_"


def is_temp_name(name: str) -> bool:
    """Is ``name`` (a file name, no folder) one :func:`atomic_write_bytes` gives its temp files?"""
    return _TEMP_NAME.fullmatch(name) is not None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    Raises:
        IsADirectoryError: ``path`` is a directory (nothing is written).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stray_temps(root: str | Path, *, skip_dir: Callable[[Path], bool] | None = None) -> list[Path]:
    """Remove the temp files a crashed :func:`atomic_write_bytes` left anywhere under ``root``.

    Only regular files whose names match the writer's own pattern (:func:`is_temp_name`) go;
    symbolic links are neither followed nor removed.

    Args:
        skip_dir: a folder below ``root`` for which it returns True is not entered (e.g. one that
            another live writer holds).

    Returns:
        the files removed.
    """
    removed: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if skip_dir is not None:
            dirs[:] = [d for d in dirs if not skip_dir(here / d)]
        for name in files:
            if not is_temp_name(name):
                continue
            p = here / name
            try:
                if stat.S_ISREG(os.lstat(p).st_mode):
                    p.unlink()
                    removed.append(p)
            except FileNotFoundError:  # gone meanwhile
                pass
    return removed
