"""Run one submission's notebook in its own process tree, under limits, and hand back the
executed notebook as data.

The parent (this module) never runs student code. It starts the child entry point
(`child.py`, which runs nbclient and the kernel) in a new session and, where the machine
allows it, inside fresh namespaces:

- `unshare --net`: no network; the namespace's own loopback is brought up for the kernel's ZMQ
  sockets, so the student can reach nothing but itself.
- `unshare --pid --fork --kill-child --mount-proc`: the whole tree, however it forks or
  `setsid`s, dies with the namespace's init; its /proc shows only its own processes, so the
  grader's environment and other submissions are out of sight.
- a private mount namespace where the root filesystem is read-only but for `workdir` and a
  fresh /dev/shm (SHM_MB); other mounts are left as they are.
- `unshare --ipc`: System V IPC and POSIX message queues of the run's own.
- `setpriv`: every capability dropped before Python starts, so the student cannot undo the
  mounts, leave the namespaces or raise the resource limits.

With `uid` (as the grader always runs), the same namespaces, set-up and privilege drop come
from a forking server instead (`forkserver.py`, one per grader thread): it has imported the
runner's and kernel's modules (nbclient, ipykernel, numpy, matplotlib, numba) once, and, when
the grader gives it its numba cache (`start_server(kernels)`), cnn_core with every kernel
loaded and detached from that cache (a run that compiles a new signature keeps it), and each
run is a fork of it that enters its own namespaces, runs the same set-up commands and drops its
privileges itself; the runner in turn forks the kernel rather than starting an interpreter.
A run then starts in about 0.5 s of wall time instead of 1.2 s, and the notebook's first
imports are already done.

Without `uid` the student is uid 0 (less its capabilities) and can READ every root-readable
file. With `uid` (one per concurrent run, chosen by the caller) the whole tree, runner
included, runs as that uid and gid with no supplementary groups. The workdir and everything in
it are chowned to the uid first (links not followed) and the workdir made 0700, so workdirs of
other runs, owned by other uids, cannot be read. The caller, root with CAP_DAC_OVERRIDE, can
still read and delete whatever the student leaves there, whatever its owner or mode.
A folder on the way to the workdir, the interpreter, its site-packages or the runner that the
uid cannot search (say /root, 0700, holding a pyenv Python) is replaced, in the mount namespace
only, by a read-only tmpfs holding just those paths, bound from the original.

`hide` lists paths the student must not see even where their modes allow it (solutions, hidden
tests, the gradebook): before privileges are dropped each folder gets an empty read-only tmpfs
mounted over it and each file a read-only bind of /dev/null (it reads as empty).

Every process of the run is in one control group (`groups.py`) holding memory_mb and
max_processes for the whole tree: the first process enters it before anything else (the
forking server's fork writes its own pid; a new interpreter is started by a shell that does),
and the group is removed, whatever is left in it killed, when the run ends. The work folder is
a tmpfs of disk_mb holding a copy of it, so what the run writes is bounded and never reaches
the grader's disk. The child sets RLIMIT_AS (memory_mb), RLIMIT_FSIZE (max_output_mb) and
RLIMIT_CORE (0) before the kernel starts; it kills the kernel when a cell runs past `cell_timeout` or the notebook
past `timeout` (keeping the partial notebook, and saying in which cell it stopped), and cuts the
captured output to max_output_mb (a tenth of it per cell, keeping each cell's head and tail).
The parent hard-kills the whole tree GRACE seconds after `timeout` whatever happened inside.

The result comes back through the child's stdout pipe, never through a file: a file, even in a
parent-owned folder, is something a process in the tree could replace or link elsewhere,
while the pipe is held only by the parent and the sandbox's own processes (unshare, the
namespace's init, the runner), whose descriptors the student's processes cannot open: the
runner and its init are non-dumpable and the student lacks CAP_SYS_PTRACE (which holds when
they share the student's uid, too). The parent
reads at most the size cap and parses the bytes as JSON with nbformat; nothing is unpickled.

What remains open, even with `uid` and `hide`:
- every world-readable file not in `hide` (the course repository, /etc, other software) can
  be read; hide what matters, or keep it out of world-readable places;
- the search-permission test reads mode bits only: an ACL that denies the uid a folder on the
  way to the interpreter or workdir makes the run fail rather than be worked around;
- other writable mounts (say /run/user/...) stay shared between runs, guarded only by their
  modes and the runner's umask 077;
- where no control group can be made (`groups.create` says why), memory is limited per
  process, not per tree (RLIMIT_AS), and processes per uid (RLIMIT_NPROC, with `uid` only:
  root's count is the whole machine's);
- /proc/self/mountinfo shows the student which paths are hidden (their names, not contents);
- without namespaces (`_namespace_problem()`), neither uid nor hide is enforced: the run goes
  ahead as the grader's own user and `isolation` says so. `isolation` in the result always
  says what was enforced, aspect by aspect.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import site
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat

from autograder.sandbox import groups
from autograder.sandbox.child import describe_exit, is_alive, kill_descendants

MB = 2**20
RUNNER = Path(__file__).with_name("child.py")
SERVER = Path(__file__).with_name("forkserver.py")
SHM_MB = 64  # size of each run's own /dev/shm
GRACE = 5.0  # seconds past `timeout` the runner has to hand back a partial notebook
CHUNK = 64 * 1024  # bytes per pipe read or write
STDERR_TAIL = 16 * 1024  # bytes of the tree's stderr kept to explain a failure
# Signs of an exhausted address space in an error message or on stderr
MEMORY_HINTS = (
    "MemoryError",
    "std::bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "failed to map segment",
)
# Threads per library when the grader's environment does not say: the batch grader runs one
# sandbox per core, so more would only oversubscribe the machine.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
STATUSES = ("ok", "timeout", "memory", "crashed", "invalid")
MAX_UID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


@dataclass(frozen=True)
class Limits:
    timeout: float = 600.0  # wall seconds for the whole notebook; hard kill after it
    # nbclient per-cell timeout, seconds; None: the whole notebook's (the grader sets the
    # assignment's own when it is None)
    cell_timeout: float | None = None
    # memory of the whole run, every process it starts together (a control group; where none
    # can be made, each process's RLIMIT_AS alone); each process is also held to it
    memory_mb: int = 2048
    # the captured output is cut to this (each cell to a tenth of it, at least 1 MB); each file
    # written and the input notebook are limited to it
    max_output_mb: int = 50
    # processes and threads of the whole run (a control group), and of the student's uid
    # (RLIMIT_NPROC)
    max_processes: int = 256
    network: bool = False  # False: no network for the student's code
    case_timeout: float = 10.0  # seconds per case of the grader's output checks
    # what the run can write, MB: its work folder, /tmp and /var/tmp share one tmpfs of this
    # size (its pages count against memory_mb too); with namespaces only
    disk_mb: int = 512
    groups: bool = True  # False: no control groups, the per-process limits alone

    def __post_init__(self) -> None:
        names = ("timeout", "cell_timeout", "memory_mb", "max_output_mb", "max_processes")
        for name in (*names, "case_timeout", "disk_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {value}")

    @property
    def per_cell(self) -> float:
        """Seconds a cell may run."""
        return self.timeout if self.cell_timeout is None else min(self.cell_timeout, self.timeout)


@dataclass
class RunResult:
    status: str  # "ok" | "timeout" | "memory" | "crashed" | "invalid"
    reason: str  # human-readable; "" when ok
    notebook: nbformat.NotebookNode | None  # the executed notebook, outputs included, if any
    seconds: float  # wall time of the whole run
    isolation: dict = field(default_factory=dict)  # what was actually enforced, by aspect
    # index of the cell the status concerns: where the run stopped (a timeout, a dead kernel
    # or runner), or the cell that ran out of memory; None when no cell is to blame
    cell: int | None = None
    completed: bool = False  # True when every cell ran (some may have failed)
    truncated: dict[int, int] = field(default_factory=dict)  # cell index -> bytes of output cut


def run_notebook(
    notebook: Path,
    workdir: Path,
    limits: Limits = Limits(),  # noqa: B008 - frozen, so sharing the default is safe
    env: Mapping[str, str] | None = None,
    *,
    hide: Iterable[str | os.PathLike] = (),
    uid: int | None = None,
) -> RunResult:
    """Execute `notebook` with `workdir` as its folder, in a sandbox under `limits`.

    `workdir` should be a fresh folder holding only what the student's code may see; the run
    adds `.home/` there (HOME, Jupyter, IPython, Matplotlib and numba caches, TMPDIR). `env`
    entries (e.g. CNNKIT_STUDENT_ID) are added to the child's minimal environment.

    `uid` (e.g. 200000 + a worker slot; distinct for runs at the same time): the whole tree
    runs as that uid and gid, without groups. `workdir` and its contents are chowned to it
    beforehand and `workdir` is made mode 0700. Afterwards the caller, as root, can still read
    every file the student left and delete `workdir` (CAP_DAC_OVERRIDE ignores owner and mode);
    ownership is not handed back. `hide`: folders and files the student must not see; those
    that do not exist are skipped. Both need namespaces; without them the run goes ahead
    unconfined and `isolation` says so.

    Raises NotADirectoryError for a missing workdir and ValueError for a bad `uid` or a hidden
    path that contains the workdir or the Python the run needs. Never raises for anything the
    notebook does: every outcome is a RunResult.
    """
    started = time.monotonic()
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise NotADirectoryError(f"workdir {workdir} is not a folder")
    _check_uid(uid)
    hidden = _hidden(hide, workdir)
    try:
        source = _load(Path(notebook), limits.max_output_mb)
    except ValueError as exc:
        return RunResult("invalid", str(exc), None, time.monotonic() - started)
    environment = _environment(workdir, env or {})  # makes .home, so it is chowned below
    problem = _namespace_problem()
    group, no_group = _group(limits)
    isolation = _isolation(limits, problem, uid, hidden) | _grouped(limits, group, no_group)
    options = _runner_options(limits, started + limits.timeout)
    try:
        if uid is not None and problem is None:
            _hand_over(workdir, uid)
            request = {
                "workdir": str(workdir),
                "uid": uid,
                "env": environment,
                "network": limits.network,
                "sh": _tools()["sh"],
                "setup": _setup(limits, workdir, uid, hidden),
                "runner": options,
                "cgroups": [str(p) for p in group.procs] if group else [],
            }
            preamble = json.dumps(request).encode()
            launch, source = _spawn, b"%d\n" % len(preamble) + preamble + source
        else:
            argv = _entering(group, _command(options, problem, limits, workdir, hidden))
            launch = functools.partial(_start, argv, workdir, environment)
        cap = limits.max_output_mb * MB + len(source) + MB  # outputs + the notebook's own text
        with launch() as proc:
            try:
                out, err, ending = _exchange(proc, source, started + limits.timeout + GRACE, cap)
            finally:
                _kill_tree(proc)
            err += _drain(proc.stderr)
        killed = group.oom_kills() if group else 0
    finally:
        if group is not None:
            group.remove()
    verdict = _verdict(out, err[-STDERR_TAIL:], ending, proc.returncode, limits)
    if killed and not verdict.completed and verdict.status != "invalid":
        verdict = replace(verdict, status="memory", reason=_out_of_memory(limits, killed))
    return replace(verdict, seconds=time.monotonic() - started, isolation=isolation)


def _group(limits: Limits) -> tuple[groups.Group | None, str]:
    """The run's control groups, or None and why there are none."""
    if not limits.groups:
        return None, "control groups turned off (Limits.groups)"
    return groups.create(limits.memory_mb, limits.max_processes)


def _out_of_memory(limits: Limits, killed: int) -> str:
    return (
        f"the run's processes together used more than the {limits.memory_mb} MB memory "
        f"budget; the kernel's out-of-memory killer ended {killed} of them"
    )


def _grouped(limits: Limits, group: groups.Group | None, why: str) -> dict[str, str]:
    """The isolation entries the run's control group adds (or why there is none)."""
    if group is None:
        return {"group": f"none: {why}; memory and processes limited per process only"}
    return {
        "group": f"cgroup v{group.version}: {limits.memory_mb} MB of memory and "
        f"{limits.max_processes} processes for the whole run",
    }


def _entering(group: groups.Group | None, argv: list[str]) -> list[str]:
    """`argv` run by a shell that first moves itself into the run's groups, so that every
    process it becomes or starts is counted there."""
    if group is None:
        return argv
    moves = " && ".join(f"echo $$ > {shlex.quote(str(p))}" for p in group.procs)
    return [_tools()["sh"], "-c", f'{moves} && exec "$@"', "sh", *argv]


# --------------------------------------------------------------------------- input


def _load(path: Path, max_mb: int) -> bytes:
    """The notebook at `path` as validated nbformat-4 JSON bytes; ValueError saying why not."""
    try:
        size = path.stat().st_size
        if size > max_mb * MB:
            raise ValueError(f"{path.name} is {size / MB:.1f} MB, over the {max_mb} MB limit")
        nb = _parse(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path.name} is not a valid notebook: {exc}") from None
    return nbformat.writes(nb).encode()


def _parse(data: bytes) -> nbformat.NotebookNode:
    """An nbformat-4 notebook from JSON bytes, validated; ValueError naming the problem."""
    try:
        nb = nbformat.convert(nbformat.reader.reads(data.decode("utf-8")), 4)
        nbformat.validate(nb)
    except Exception as exc:  # malformed input raises assorted types inside nbformat
        raise ValueError(_shorten(f"{type(exc).__name__}: {exc}")) from None
    return nb


def _shorten(text: str, limit: int = 300) -> str:
    """At most `limit` characters of the first lines (validation errors quote whole cells)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- the student's view


def _check_uid(uid: int | None) -> None:
    """ValueError unless `uid` is None or an unprivileged uid the kernel accepts."""
    if uid is None:
        return
    if isinstance(uid, bool) or not isinstance(uid, int) or not 0 < uid <= MAX_UID:
        raise ValueError(f"uid must be an int from 1 to {MAX_UID}, got {uid!r}")


def _hidden(hide: Iterable[str | os.PathLike], workdir: Path) -> tuple[Path, ...]:
    """The paths in `hide` that exist, resolved (a symlink hides what it points to), in
    order, without those inside another. ValueError for one that contains `workdir` or a folder the runner needs."""
    if isinstance(hide, (str, os.PathLike)):  # one path, not a collection of its characters
        raise ValueError(f"hide must be a collection of paths, got {hide!r}")
    needed = {path: "a folder the runner needs" for path in _runtime()}
    needed[workdir] = "the workdir"
    found: list[Path] = []
    for given in hide:
        path = Path(given).resolve()
        for inside, what in needed.items():
            if inside.is_relative_to(path):
                raise ValueError(f"hide path {given} contains {what} {inside}, hiding it too")
        if path.exists() and path not in found:
            found.append(path)
    # a path inside another hidden one vanishes with it: mounting on it would then fail
    return tuple(p for p in found if not any(p != q and p.is_relative_to(q) for q in found))


@functools.cache
def _runtime() -> tuple[Path, ...]:
    """Folders the runner and kernel read: the interpreter's installation, its site-packages
    and the runner's own folder."""
    names = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    names |= {*site.getsitepackages(), str(RUNNER.parent)}
    return tuple(sorted({Path(name).resolve() for name in names if Path(name).is_dir()}))


def _unsearchable(folder: Path, uid: int) -> bool:
    """True when `uid` (its gid the same, no groups) may not search `folder`, by mode bits."""
    info = folder.stat()
    if info.st_uid == uid:
        bit = stat.S_IXUSR
    else:
        bit = stat.S_IXGRP if info.st_gid == uid else stat.S_IXOTH
    return not info.st_mode & bit


def _exposures(paths: Iterable[Path], uid: int) -> dict[Path, list[Path]]:
    """{topmost folder `uid` cannot search on the way to some of `paths`: those paths}, a
    path inside another one left out (binding the outer one brings it along)."""
    blocked: dict[Path, list[Path]] = {}
    for path in sorted(set(paths)):  # a folder sorts before what it contains
        ancestors = reversed(path.parents[:-1])  # from the top down, / itself left out
        top = next((folder for folder in ancestors if _unsearchable(folder, uid)), None)
        if top is None:
            continue
        kept = blocked.setdefault(top, [])
        if not any(path.is_relative_to(other) for other in kept):
            kept.append(path)
    return blocked


def _hand_over(workdir: Path, uid: int) -> None:
    """Make `workdir` and all in it owned by `uid` (group `uid` too), `workdir` mode 0700 so
    other uids cannot look in. Links are not followed and a file with several hard links
    keeps its owner: a link left by an earlier run must not hand the student its target."""
    for folder, dirs, files in os.walk(workdir):  # symlinked folders are listed, not entered
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode) or info.st_nlink == 1:
                os.chown(path, uid, uid, follow_symlinks=False)
    os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)


# --------------------------------------------------------------------------- the child


def _runner_options(limits: Limits, deadline: float) -> dict[str, float | int]:
    """The runner's options (autograder.sandbox.child). `deadline` is in time.monotonic()
    seconds, a clock every process on the machine shares."""
    return {
        "timeout": limits.timeout,
        "deadline": deadline,
        "cell_timeout": limits.per_cell,
        "memory_mb": limits.memory_mb,
        "max_output_mb": limits.max_output_mb,
        "max_processes": limits.max_processes,
    }


def _command(
    options: dict, problem: str | None, limits: Limits, workdir: Path, hidden: tuple[Path, ...]
) -> list[str]:
    """The argv of a run started as a new interpreter (no uid, or no namespaces: `problem`
    says why not): the runner, in namespaces as root without capabilities if it can be."""
    runner = [sys.executable, "-I", "-B", str(RUNNER)]  # -I: no PYTHON* variables, no cwd
    runner += [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    return runner if problem else _in_namespaces(runner, limits, workdir, hidden)


def _start(argv: list[str], workdir: Path, environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
        env=environment,
        start_new_session=True,  # one process group to kill, whatever happens
    )


def _isolation(
    limits: Limits, problem: str | None, uid: int | None, hidden: tuple[Path, ...]
) -> dict[str, str]:
    """What the run enforces, by aspect; `problem` says why namespaces are unavailable."""
    isolation = {
        "memory": f"RLIMIT_AS {limits.memory_mb} MB per process",
        "files": f"RLIMIT_FSIZE {limits.max_output_mb} MB per file, no core dumps",
    }
    count = f"{len(hidden)} path{'' if len(hidden) == 1 else 's'}"
    if problem:
        caller = f"uid {os.geteuid()}, the grader's own"
        return isolation | {
            "network": "allowed by limits" if limits.network else f"unavailable: {problem}",
            "processes": f"process group and its descendants (no pid namespace: {problem})",
            "filesystem": f"unrestricted (no mount namespace: {problem})",
            "privileges": f"not dropped: as root it could raise its own limits ({problem})",
            "user": caller if uid is None else f"unenforced: {caller}, not {uid} ({problem})",
            "hidden": f"unenforced: {count} not hidden ({problem})" if hidden else "none asked",
            "ipc": f"shared with the machine: System V IPC and /dev/shm ({problem})",
        }
    root = "uid 0 without capabilities: reads what root can"
    processes = "pid namespace: the whole tree dies with it; own /proc"
    if uid is not None:  # RLIMIT_NPROC counts by uid: root's would count the whole machine's
        processes += f"; RLIMIT_NPROC {limits.max_processes} for the uid"
    return isolation | {
        "network": "allowed by limits" if limits.network else "unshare --net (loopback only)",
        "processes": processes,
        "filesystem": f"/, /tmp and /var/tmp read-only; workdir on a {limits.disk_mb} MB tmpfs "
        "(mount namespace); other mounts unchanged",
        "privileges": "all capabilities dropped, no new privileges",
        "user": root if uid is None else f"uid {uid}, no groups",
        "hidden": f"{count} hidden",
        "ipc": f"own System V IPC (ipc namespace) and /dev/shm ({SHM_MB} MB tmpfs)",
    }


def _in_namespaces(
    command: list[str], limits: Limits, workdir: Path, hidden: tuple[Path, ...] = ()
) -> list[str]:
    """`command` in new pid, mount (and, without network, net) namespaces, after the set-up
    that needs root's capabilities, then as root with every capability dropped."""
    tool = _tools()
    setup = _setup(limits, workdir, None, hidden)
    return [
        tool["unshare"],
        *([] if limits.network else ["--net"]),
        *("--ipc", "--pid", "--fork", "--kill-child", "--mount-proc", "--"),
        *(tool["sh"], "-c", " && ".join(setup) + ' && exec "$@"', "sh"),
        *(tool["setpriv"], "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"),
        *command,
    ]


def _setup(limits: Limits, workdir: Path, uid: int | None, hidden: tuple[Path, ...]) -> list[str]:
    """Shell commands, run as root inside the new namespaces, that shape what the student sees.
    Hiding comes before exposing: the recursive binds of exposed paths carry the covers along."""
    tool = _tools()
    ip, mount = shlex.quote(tool["ip"]), shlex.quote(tool["mount"])
    # mounts made here stay here (unshare does this itself; the forking server does not)
    setup = [f"{mount} --make-rprivate /"]
    setup += [] if limits.network else [f"{ip} link set lo up"]
    if Path("/dev/shm").is_dir():  # POSIX shared memory of the run's own, like its System V IPC
        shm = f"-t tmpfs -o nosuid,nodev,noexec,mode=1777,size={SHM_MB}m cnnkit-shm"
        setup.append(f"{mount} {shm} /dev/shm")
    setup += _disk(limits.disk_mb, uid)  # its own mount, so / can go read-only alone
    setup += _hiding(hidden)
    if uid is not None:
        for top, paths in _exposures([workdir, *_runtime()], uid).items():
            setup += _exposing(top, paths, writable=workdir)
    # cd: re-enter workdir by its path, landing on the writable mount now found there
    return [*setup, f"{mount} -o remount,bind,ro /", 'cd "$PWD"']


def _disk(disk_mb: int, uid: int | None) -> list[str]:
    """Put the work folder ($PWD) on a tmpfs of `disk_mb` holding a copy of it (reached through
    fd 8, opened before the cover): all the run can write then shares one budget (its TMPDIR
    is in there), and the copy outside is left as it was. /tmp and /var/tmp go read-only with
    / (or, where they are file systems of their own, here)."""
    mount = shlex.quote(_tools()["mount"])
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    options = f"nosuid,nodev,mode=0700,size={disk_mb}m{owner}"
    lines = [
        'exec 8<"$PWD"',
        f'{mount} -t tmpfs -o {options} cnnkit-work "$PWD"',
        'cp -a /proc/self/fd/8/. "$PWD"/',
        "exec 8<&-",
    ]
    for shared in ("/tmp", "/var/tmp"):
        if os.path.ismount(shared):
            lines.append(f"{mount} -o remount,bind,ro {shared}")
    return lines


def _hiding(hidden: tuple[Path, ...]) -> list[str]:
    """Cover each folder with an empty read-only tmpfs and each file with /dev/null."""
    mount = shlex.quote(_tools()["mount"])
    empty = "-t tmpfs -o ro,nosuid,nodev,noexec,mode=0555,size=4k cnnkit-hidden"
    return [
        f"{mount} {empty} {shlex.quote(str(path))}"
        if path.is_dir()
        else f"{mount} --bind -o ro /dev/null {shlex.quote(str(path))}"
        for path in hidden
    ]


def _exposing(top: Path, paths: list[Path], writable: Path) -> list[str]:
    """Replace folder `top`, which the student's uid cannot search, with a read-only tmpfs
    holding only `paths`, bound from the original (reached through fd 9, opened before the
    cover, since the path then leads into the tmpfs). Only `writable` stays writable."""
    mount = shlex.quote(_tools()["mount"])
    ro = "-o remount,bind,ro,nosuid,nodev"
    lines = [
        f"exec 9<{shlex.quote(str(top))}",
        f"{mount} -t tmpfs -o nosuid,nodev,mode=0755 cnnkit-exposed {shlex.quote(str(top))}",
    ]
    for path in paths:
        target = shlex.quote(str(path))
        source = shlex.quote(f"/proc/self/fd/9/{path.relative_to(top)}")
        lines += [f"(umask 022 && mkdir -p {target})", f"{mount} -c --rbind {source} {target}"]
        lines += [] if path == writable else [f"{mount} {ro} {target}"]
    return [*lines, f"{mount} {ro} {shlex.quote(str(top))}", "exec 9<&-"]


@functools.cache
def _tools() -> dict[str, str | None]:
    """Absolute paths of the tools the namespaces need (the child's PATH is minimal)."""
    return {name: shutil.which(name) for name in ("unshare", "setpriv", "ip", "mount", "sh")}


@functools.cache
def _namespace_problem() -> str | None:
    """Why namespaces cannot be used here, or None when a trial run of the full set-up works."""
    missing = [name for name, path in _tools().items() if path is None]
    if missing:
        return f"{', '.join(missing)} not found"
    with tempfile.TemporaryDirectory(prefix="cnnkit-probe-") as tmp:
        try:
            trial = subprocess.run(
                _in_namespaces(["true"], Limits(), Path(tmp)),
                cwd=tmp,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unshare failed: {exc}"
    if trial.returncode != 0:
        return f"unshare failed: {_shorten(trial.stderr.decode(errors='replace'))}"
    return None


def _environment(workdir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The child's whole environment: nothing of the grader's but PATH basics, LANG and thread
    counts. Every per-user folder lies inside workdir, numba's cache included, so one
    submission cannot poison another's compiled code (the kit's kernels a server loaded save
    nothing: they are detached from the cache they came from)."""
    home = workdir / ".home"
    folders = {
        "HOME": home,
        "IPYTHONDIR": home / ".ipython",
        "JUPYTER_CONFIG_DIR": home / ".jupyter",
        "JUPYTER_DATA_DIR": home / ".local" / "share" / "jupyter",
        "JUPYTER_RUNTIME_DIR": home / ".local" / "share" / "jupyter" / "runtime",
        "MPLCONFIGDIR": home / ".config" / "matplotlib",
        "NUMBA_CACHE_DIR": home / ".cache" / "numba",
        "TMPDIR": home / "tmp",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = {name: str(folder) for name, folder in folders.items()}
    return env | _base_environment() | dict(extra)


def _base_environment() -> dict[str, str]:
    """What every run's environment holds besides its folders."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MB of address space per arena otherwise
        # the output checks call the student's functions in forks of the kernel: a fork dies in
        # numba's OpenMP threading layer once the kernel has used it, not in its workqueue
        "NUMBA_THREADING_LAYER": "workqueue",
    }
    return env | {name: os.environ.get(name, "1") for name in THREAD_VARS}


# --------------------------------------------------------------------------- the forking server


class _Server:
    """The forking server (autograder/sandbox/forkserver.py) of the thread that started it: the
    runner's and kernel's modules imported once, one fork per run. It dies with that thread."""

    def __init__(self, kernels: Path | None) -> None:
        mine, theirs = socket.socketpair()
        self.kernels = kernels
        self.log = tempfile.TemporaryFile()  # its own stderr, to say why it ended
        command = [sys.executable, "-I", "-B", str(SERVER), str(theirs.fileno()), str(os.getpid())]
        self.process = subprocess.Popen(
            command + (["--kernels"] if kernels else []),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=_server_environment(kernels),
            start_new_session=True,
        )
        theirs.close()
        self.socket, self.replies = mine, mine.makefile("rb")

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self) -> _Spawned:
        """A new run, its stdin, stdout and stderr piped to this process."""
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
        try:
            socket.send_fds(self.socket, [b"run"], [in_r, out_w, err_w])
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        pipes = open(in_w, "wb", 0), open(out_r, "rb", 0), open(err_r, "rb", 0)
        return _Spawned(self, self._reply(), *pipes)

    def exit_code(self) -> int:
        """The exit code of the run spawned last, once it has ended."""
        return self._reply()

    def _reply(self) -> int:
        try:
            line = self.replies.readline()
        except ConnectionResetError:  # it died with our message unread
            line = b""
        if not line:
            self.log.seek(0)
            why = _last_error(self.log.read()[-STDERR_TAIL:].decode(errors="replace"))
            ended = describe_exit(self.process.wait())
            raise RuntimeError(f"the sandbox server ended ({ended}){why}")
        return int(line)


@dataclass
class _Spawned:
    """A run the server forked, with the parts of subprocess.Popen the exchange uses."""

    server: _Server
    pid: int
    stdin: io.RawIOBase
    stdout: io.RawIOBase
    stderr: io.RawIOBase
    returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.server.exit_code()
            except RuntimeError:  # the server died, and the run, dying with it, was killed
                self.returncode = -signal.SIGKILL
        return self.returncode

    def __enter__(self) -> _Spawned:
        return self

    def __exit__(self, *exc) -> None:
        for pipe in (self.stdin, self.stdout, self.stderr):
            pipe.close()
        self.wait()


_servers = threading.local()


def _server() -> _Server:
    """This thread's forking server, started on first use (or again, if it has died or loaded
    other kernels than start_server last asked for)."""
    kernels = getattr(_servers, "kernels", None)
    server = getattr(_servers, "server", None)
    if server is None or not server.alive() or server.kernels != kernels:
        server = _servers.server = _Server(kernels)
    return server


def start_server(kernels: Path | None = None) -> bool:
    """Start this thread's forking server now, if runs with a uid will use one here, so that
    its imports (about 1.5 s) overlap with the caller's own preparation of the first run.
    `kernels`: a numba cache folder holding cnn_core's kernels (autograder.kernel_cache), which
    the server then loads once for all its runs. True when runs here come from the server."""
    _servers.kernels = kernels
    if _namespace_problem() is not None:
        return False
    _server()
    return True


def _spawn() -> _Spawned:
    """A run forked by this thread's server; a server found dead on the way is replaced once."""
    try:
        return _server().spawn()
    except (OSError, RuntimeError):
        _servers.server = _Server(getattr(_servers, "kernels", None))
        return _servers.server.spawn()


@functools.cache
def _server_home() -> Path:
    """A folder for the server's own settings and caches (matplotlib's font list, which the
    runs inherit): the grader's, readable by every run, removed when the grader exits."""
    home = Path(tempfile.mkdtemp(prefix="cnnkit-server-"))
    home.chmod(0o755)
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def _server_environment(kernels: Path | None) -> dict[str, str]:
    """The server's environment: a run's, with the server's own folder for the per-user ones
    and numba's cache at `kernels`, if given. Each run replaces it with its own before it does
    anything else."""
    home = _server_home()
    env = _base_environment() | {"HOME": str(home), "MPLCONFIGDIR": str(home)}
    return env | {"NUMBA_CACHE_DIR": str(kernels or home / "numba")}


# --------------------------------------------------------------------------- talking, killing


def _exchange(
    proc: subprocess.Popen, data: bytes, deadline: float, cap: int
) -> tuple[bytearray, bytearray, str]:
    """Feed `data` to the child's stdin while reading its stdout and stderr, until stdout ends,
    `deadline` (monotonic seconds) passes or stdout exceeds `cap` bytes. Returns (stdout,
    stderr tail, ending) with ending "eof", "timeout" or "overflow"."""
    out, err, sent = bytearray(), bytearray(), 0
    os.set_blocking(proc.stdin.fileno(), False)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out, err, "timeout"
            for key, _ in sel.select(left):
                if key.fileobj is proc.stdin:
                    sent = _feed(proc.stdin, data, sent)
                    if sent == len(data):
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, CHUNK)
                if key.fileobj is proc.stderr:
                    err = (err + chunk)[-STDERR_TAIL:]
                    if not chunk:
                        sel.unregister(proc.stderr)
                elif not chunk:  # every holder of stdout has exited: the report is complete
                    return out, err, "eof"
                else:
                    out += chunk
                    if len(out) > cap:
                        return out, err, "overflow"


def _feed(pipe, data: bytes, sent: int) -> int:
    """Write the next chunk of `data` from offset `sent`; the new offset (all of it when the
    reader is gone)."""
    try:
        return sent + os.write(pipe.fileno(), data[sent : sent + CHUNK])
    except BlockingIOError:
        return sent
    except BrokenPipeError:
        return len(data)


def _drain(pipe) -> bytes:
    """What is left in `pipe` now, without waiting for writers that may have escaped."""
    os.set_blocking(pipe.fileno(), False)
    chunks = []
    while True:
        try:
            chunk = os.read(pipe.fileno(), CHUNK)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)[-STDERR_TAIL:]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the child, its process group and every descendant (the kernel runs in a session
    of its own), then wait until they are gone. In a pid namespace its init's death takes
    the rest; without one, a process that double-forked away from the tree can survive."""
    victims = kill_descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone
    proc.wait()
    deadline = time.monotonic() + GRACE
    while any(map(is_alive, victims)) and time.monotonic() < deadline:
        time.sleep(0.02)


# --------------------------------------------------------------------------- the verdict


def _verdict(
    out: bytes, err: bytes, ending: str, exit_code: int | None, limits: Limits
) -> RunResult:
    """The RunResult (seconds and isolation aside) of what the child left: its progress lines,
    report and notebook, its stderr tail, how the exchange ended and its exit code."""
    try:
        started, report, body = _read_result(bytes(out))
    except ValueError as exc:
        return RunResult("invalid", f"the sandbox's report could not be read: {exc}", None, 0)
    if ending == "timeout":
        why = f"still running {GRACE:g} s after the {limits.timeout:g} s wall-time limit"
        return RunResult("timeout", why + "; the process tree was killed", None, 0, cell=started)
    if ending == "overflow":
        why = f"the executed notebook exceeded the {limits.max_output_mb} MB output limit"
        return RunResult("invalid", why + "; the process tree was killed", None, 0)
    stderr = err.decode("utf-8", errors="replace")
    if report is None:
        why = f"the sandbox ended without a result ({describe_exit(exit_code)})"
        status, reason = _crash(stderr, "crashed", why + _last_error(stderr), limits)
        return RunResult(status, reason, None, 0, cell=started)
    try:
        status, reason, cell, truncated = report
        nb = _parse(body)
    except ValueError as exc:
        return RunResult("invalid", f"the executed notebook could not be read: {exc}", None, 0)
    completed = status == "ok"
    memory_error = _memory_error(nb)
    if memory_error and status in ("ok", "crashed"):
        index, what = memory_error
        reason = f"{what} ({_memory_limit(limits)})"
        return RunResult(
            "memory",
            reason,
            nb,
            0,
            cell=index if completed else cell,
            completed=completed,
            truncated=truncated,
        )
    status, reason = _crash(stderr, status, reason, limits)
    return RunResult(status, reason, nb, 0, cell=cell, completed=completed, truncated=truncated)


def _read_result(out: bytes) -> tuple[int | None, tuple | None, bytes]:
    """(index of the last cell started, the report or None, the notebook's bytes) from what
    the runner wrote: {"started": i} lines, then the report line, then the notebook. Checked
    like any untrusted input; ValueError for a malformed line."""
    started, rest = None, out
    while True:
        line, newline, after = rest.partition(b"\n")
        if not newline:
            return started, None, b""  # the runner ended before its report
        try:
            data = json.loads(line)
        except ValueError:
            raise ValueError("a line is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("a line is not a JSON object")
        if "started" not in data:
            return started, _report(data), after
        started = _index(data["started"])
        rest = after


def _report(report: dict) -> tuple[str, str, int | None, dict[int, int]]:
    """(status, reason, cell, truncated) from the runner's report line."""
    status, reason = report.get("status"), report.get("reason")
    if status not in STATUSES or not isinstance(reason, str):
        raise ValueError(f"bad report line (status {status!r})")
    cell = report.get("cell")
    truncated = report.get("truncated") or {}
    if not isinstance(truncated, dict):
        raise ValueError("bad report line (truncated)")
    cuts = {_index(int(k)): _index(v) for k, v in truncated.items() if str(k).isdigit()}
    return status, reason, None if cell is None else _index(cell), cuts


def _index(value) -> int:
    """A non-negative int from the runner's report; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"bad report value {value!r}")
    return value


def _crash(stderr: str, status: str, reason: str, limits: Limits) -> tuple[str, str]:
    """A crash whose stderr shows memory exhaustion becomes ('memory', reason + the limit)."""
    if status == "crashed" and any(hint in stderr for hint in MEMORY_HINTS):
        return "memory", f"{reason} ({_memory_limit(limits)})"
    return status, reason


def _memory_limit(limits: Limits) -> str:
    return f"memory limit: {limits.memory_mb} MB of address space per process beyond the kernel's start-up size"


def _memory_error(nb: nbformat.NotebookNode) -> tuple[int, str] | None:
    """(index, 'cell N: <error>') of the first error output showing memory exhaustion: a
    MemoryError, or another error whose message says so (an extension module that cannot be
    mapped)."""
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            error = f"{out.get('ename')}: {out.get('evalue')}"
            if out.get("output_type") == "error" and any(hint in error for hint in MEMORY_HINTS):
                return index, _shorten(f"cell {index + 1}: {error}")
    return None


def _last_error(stderr: str) -> str:
    """'; <line>' for the last line of `stderr` naming an error or exception, else ''."""
    lines = [line for line in stderr.splitlines() if re.search(r"(Error|Exception)\b", line)]
    return f"; {_shorten(lines[-1], 200)}" if lines else ""
