"""Control groups: one per run, holding every process the run starts, so that memory and the
number of processes are bounded for the whole tree rather than per process.

cgroup v2 is used where the grader's own group has the memory and pids controllers delegated
(they can be enabled for its children); otherwise cgroup v1, where each controller is mounted in a
hierarchy of its own (/sys/fs/cgroup/memory, /sys/fs/cgroup/pids). A run's groups are made under
the grader's own groups, in a folder `cnnkit/` of each hierarchy, named `<grader pid>-<n>`; they
are removed when the run ends, after every process left in them is killed, and a grader sweeps
the groups of graders that died before it (their pid is gone) the first time it makes one.

Where no group can be made (no cgroup file system, a container without the right to write it),
`create` returns None with the reason, and the run keeps the per-process limits alone.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
FOLDER = "cnnkit"  # under the grader's own group in each hierarchy
CONTROLLERS = ("memory", "pids")
_counter = itertools.count()
_swept: set[Path] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Group:
    """One run's control groups: cgroup `version` 1 or 2, and its folder in each hierarchy (one
    folder for v2, one per controller for v1)."""

    version: int
    folders: tuple[Path, ...]

    @property
    def procs(self) -> tuple[Path, ...]:
        """The files a process writes its pid to, to enter the groups."""
        return tuple(f / "cgroup.procs" for f in self.folders)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in the group."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for folder in self.folders:
            with contextlib.suppress(OSError):
                return _field(folder / name, "oom_kill")
        return 0

    def remove(self, patience: float = 5.0) -> bool:
        """Kill every process left in the groups and remove them; False when one could not be
        removed within `patience` seconds (it is then left for the next sweep)."""
        return all(_remove(folder, patience) for folder in self.folders)


def create(memory_mb: int, max_processes: int) -> tuple[Group | None, str]:
    """A new run's groups limited to `memory_mb` (memory and swap together) and
    `max_processes` (processes and threads), and "" ; or (None, why no group could be made)."""
    failures = []
    for make in (_create_v2, _create_v1):  # v1 too where v2 offers controllers it cannot give
        try:
            made = make(memory_mb, max_processes)
        except OSError as exc:
            failures.append(f"{exc.strerror or exc} ({exc.filename or ''})")
            continue
        if made is not None:
            return made, ""
    why = "; ".join(failures) or "no memory and pids controllers found"
    return None, f"control groups unavailable: {why}"


def _create_v2(memory_mb: int, max_processes: int) -> Group | None:
    """The run's cgroup v2 group, or None when v2 has no memory and pids controllers to give."""
    mount = _mounts().get("cgroup2")
    if mount is None:
        return None
    own = mount / _own_path("")
    if not set(CONTROLLERS) <= set(_read(own / "cgroup.controllers").split()):
        return None
    base = _base(own)
    _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
    folder = _new(base)
    _write(folder / "memory.max", str(memory_mb * 2**20))
    with contextlib.suppress(OSError):  # swap accounting may be off
        _write(folder / "memory.swap.max", "0")
    _write(folder / "pids.max", str(max_processes))
    return Group(2, (folder,))


def _create_v1(memory_mb: int, max_processes: int) -> Group | None:
    """The run's cgroup v1 groups (memory, pids), or None when either hierarchy is missing."""
    mounts = _mounts()
    if not all(c in mounts for c in CONTROLLERS):
        return None
    memory = _new(_base(mounts["memory"] / _own_path("memory")))
    try:
        limit = str(memory_mb * 2**20)
        _write(memory / "memory.limit_in_bytes", limit)
        if (memory / "memory.memsw.limit_in_bytes").exists():  # no swapping past the budget
            _write(memory / "memory.memsw.limit_in_bytes", limit)
        pids = _new(_base(mounts["pids"] / _own_path("pids")))
    except OSError:
        _remove(memory, 1.0)
        raise
    try:
        _write(pids / "pids.max", str(max_processes))
    except OSError:
        _remove(memory, 1.0)
        _remove(pids, 1.0)
        raise
    return Group(1, (memory, pids))


def _base(own: Path) -> Path:
    """The kit's folder under the grader's own group, made if missing, swept once."""
    base = own / FOLDER
    base.mkdir(exist_ok=True)
    with _lock:
        if base not in _swept:
            _swept.add(base)
            sweep(base)
    return base


def _new(base: Path) -> Path:
    folder = base / f"{os.getpid()}-{next(_counter)}"
    folder.mkdir()
    return folder


def sweep(base: Path) -> list[Path]:
    """Remove the groups under `base` left by graders that are gone (killed before they could
    remove them); the folders removed."""
    removed = []
    for folder in base.iterdir() if base.is_dir() else []:
        owner = folder.name.split("-")[0]
        if folder.is_dir() and owner.isdigit() and not _alive(int(owner)):
            if _remove(folder, 2.0):
                removed.append(folder)
    return removed


def of_grader(pid: int) -> list[Path]:
    """The run groups of the grader process `pid` present in any hierarchy."""
    found = []
    for mount in set(_mounts().values()):
        found += [p for p in mount.rglob(f"{FOLDER}/{pid}-*") if p.is_dir()]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(folder: Path, patience: float) -> bool:
    """SIGKILL every process in `folder` (a group) until none is left, then rmdir it."""
    deadline = time.monotonic() + patience
    while True:
        pids = _pids(folder)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            try:
                folder.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                pass  # a process is still exiting
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _pids(folder: Path) -> list[int]:
    try:
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


@functools.cache
def _mounts() -> dict[str, Path]:
    """{"cgroup2": its mount, "memory": v1 memory's mount, "pids": ...} from /proc/self/mounts."""
    found: dict[str, Path] = {}
    for line in _read(Path("/proc/self/mounts")).splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        kind, target, options = parts[2], Path(parts[1]), parts[3].split(",")
        if kind == "cgroup2":
            found.setdefault("cgroup2", target)
        elif kind == "cgroup":
            for controller in CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, target)
    return found


def _own_path(controller: str) -> str:
    """The grader's own group in a hierarchy ("" for v2), relative, from /proc/self/cgroup."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, names, path = line.split(":", 2)
        if (controller and controller in names.split(",")) or (not controller and names == ""):
            return path.lstrip("/")
    return ""


def _field(path: Path, name: str) -> int:
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    path.write_text(value)
