"""The grader's numba cache of the kit's kernels (`cnn_core._warm_up`), so that no submission
compiles them.

It is filled once by processes side by side, one per group of kernels, in a folder named by what
the compiled code depends on: the interpreter, numba, this CPU and the path, size and modification
time of each of cnn_core's modules (numba's own test of a cached kernel's source). A folder whose
warm-up finished holds a marker file; a later grader finds it and starts at once. Folders no
grader has used for PRUNE_DAYS are removed.

The sandbox server loads the kernels from this folder once and forks every run from there
(autograder.sandbox.start_server). Where runs start without a server, each work folder gets a
copy of it instead (`seed`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cnn_core
from autograder.cache import cache_folder, stamp
from cnn_core._warm_up import GROUPS

NUMBA_CACHE = Path(".home/.cache/numba")  # inside a sandbox's workdir (autograder.sandbox)
COMPLETE = "complete"  # the marker of a folder whose warm-up succeeded
PRUNE_DAYS = 7
WARM_UP = "from cnn_core._warm_up import compile_kernels; compile_kernels({})"
WARM_UP_SECONDS = 300
_lock = threading.Lock()


def kernel_cache() -> Path | None:
    """The numba cache folder holding the kit's kernels for both dtypes, made on the first call
    of this process if no earlier grader made it; None if that failed (each run then compiles
    what it uses). Each call marks the folder as in use, so that no grader prunes it."""
    with _lock:  # one warm-up, however many workers ask at once
        folder = _kernel_cache()
    if folder is not None:
        with contextlib.suppress(OSError):
            os.utime(folder / COMPLETE)
    return folder


@functools.cache
def _kernel_cache() -> Path | None:
    try:
        root = cache_folder() / "numba"
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "a") as lock:  # one grader at a time checks, fills, prunes
            fcntl.flock(lock, fcntl.LOCK_EX)
            folder = _finished(root, _key())
            if folder is not None:
                _prune(root, keep=folder.name)
            return folder
    except Exception:  # a cache is a speed-up: grading goes on without one
        return None


def _finished(root: Path, name: str) -> Path | None:
    """root/name once a warm-up has filled it (now, if no earlier one did), or None."""
    folder = root / name
    if (folder / COMPLETE).is_file():
        os.utime(folder / COMPLETE)  # in use: not pruned
        return folder
    _remove(folder)  # an unfinished one: a warm-up that died, a prune cut short
    made = _warm_up(root)
    if made is None:
        return None
    try:
        os.rename(made, folder)
    finally:
        shutil.rmtree(made, ignore_errors=True)
    return folder


def seed(workdir: Path, cache: Path) -> None:
    """Give a run's work folder a copy of `cache` as its numba cache: what a student's code
    writes into it reaches no one else."""
    ignore = shutil.ignore_patterns(COMPLETE)
    shutil.copytree(cache, workdir / NUMBA_CACHE, ignore=ignore, dirs_exist_ok=True)


def _key() -> str:
    """A name for what compiled kernels depend on (see the module's docstring)."""
    import llvmlite.binding as llvm

    return stamp(
        Path(cnn_core.__file__).parent.glob("*.py"),
        sys.version,
        importlib.metadata.version("numba"),
        llvm.get_host_cpu_name(),
        llvm.get_host_cpu_features().flatten(),
    )


def _warm_up(root: Path) -> Path | None:
    """A new folder under `root` filled by one process per group of kernels, with its marker;
    None (and the folder removed) if any process failed."""
    folder = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    try:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NUMBA_CACHE_DIR": str(folder)}
        commands = [[sys.executable, "-I", "-c", WARM_UP.format(i)] for i in range(len(GROUPS))]
        with ThreadPoolExecutor(len(commands)) as pool:
            if all(pool.map(functools.partial(_run, env), commands)):
                (folder / COMPLETE).touch()
                return folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _run(env: dict[str, str], command: list[str]) -> bool:
    """Run one warm-up command; True if it succeeded."""
    try:
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=WARM_UP_SECONDS)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def _prune(root: Path, keep: str) -> None:
    """Remove, under the lock, what a warm-up or removal cut short left behind, and what no
    grader has used for PRUNE_DAYS: other kernels' folders (their marker's age) and the flat
    layout of earlier versions."""
    cutoff = time.time() - PRUNE_DAYS * 86400
    for entry in root.iterdir():
        if entry.name in (keep, ".lock"):
            continue
        marker = entry / COMPLETE
        with contextlib.suppress(OSError):
            left = entry.name.startswith((".new-", ".old-"))
            if left or (marker if marker.is_file() else entry).stat().st_mtime < cutoff:
                _remove(entry)


def _remove(path: Path) -> None:
    """Remove a folder (or file) at once, as far as its name goes: it is renamed out of the way
    before its contents are deleted, so nothing finds it half gone."""
    if not path.exists():
        return
    gone = path.with_name(f".old-{os.getpid()}-{path.name}")
    os.rename(path, gone)
    shutil.rmtree(gone, ignore_errors=True) if gone.is_dir() else gone.unlink()
