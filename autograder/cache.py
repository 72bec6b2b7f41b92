"""The grader's own cache folder, for what stays the same from one batch to the next (the kit's
compiled kernels, the similarity check's documents of the kit's modules), and the stamp that
says whether a cached thing is still current."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path


def cache_folder() -> Path:
    """$XDG_CACHE_HOME/cnnkit (~/.cache/cnnkit) if it can be written, else a temporary folder
    removed when the grader exits."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    folder = Path(base) / "cnnkit"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    return _temporary_folder()


@functools.cache  # one for the whole process, so that what is kept there is found again
def _temporary_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cnnkit-cache-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def stamp(files: Iterable[Path], *more: str) -> str:
    """A short name for the path, size and modification time of each of `files` and the
    strings `more`: it changes when any of them does (numba's own test of a source file)."""
    parts = list(more)
    for path in sorted(Path(f).resolve() for f in files):
        info = path.stat()
        parts.append(f"{path} {info.st_size} {info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
