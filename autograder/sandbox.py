"""Run one submission's notebook in its own process tree, under limits, and hand back the
executed notebook as data.

The parent (this module) never runs student code. It starts the child entry point
(`_run_child.py`, which runs nbclient and the kernel) in a new session and, where the machine
allows it, inside fresh namespaces:

- `unshare --net`: no network; the namespace's own loopback is brought up for the kernel's ZMQ
  sockets, so the student can reach nothing but itself.
- `unshare --pid --fork --kill-child --mount-proc`: the whole tree, however it forks or
  `setsid`s, dies with the namespace's init; its /proc shows only its own processes, so the
  grader's environment and other submissions are out of sight.
- a private mount namespace where the root filesystem is read-only but for `workdir` (other
  mounts, such as /dev/shm, are left as they are).
- `setpriv`: every capability dropped before Python starts, so the student, though uid 0,
  cannot undo the mounts, leave the namespaces or raise the resource limits.

The child sets RLIMIT_AS (memory_mb), RLIMIT_FSIZE (max_output_mb) and RLIMIT_CORE (0) before
the kernel starts; it kills the kernel at `timeout` (keeping the partial notebook) and when
the captured output passes max_output_mb. The parent hard-kills the whole tree GRACE seconds
after `timeout` whatever happened inside.

The result comes back through the child's stdout pipe, never through a file: a file, even in a
parent-owned folder, is something a root process in the tree could replace or link elsewhere,
while the pipe is held only by the parent and the sandbox's own processes (unshare, the
namespace's init, the runner), whose descriptors the student's processes cannot open: the
runner and its init are non-dumpable and the student lacks CAP_SYS_PTRACE. The parent
reads at most the size cap and parses the bytes as JSON with nbformat; nothing is unpickled.

Student code still runs as uid 0: it can READ every root-readable file (solutions, the
gradebook, other submissions). Keeping those out of reach needs an unprivileged uid or paths
hidden from the mount namespace; `isolation` in the result says what was enforced.
"""

from __future__ import annotations

import functools
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder._run_child import describe_exit, is_alive, kill_descendants

MB = 2**20
RUNNER = Path(__file__).with_name("_run_child.py")
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


@dataclass(frozen=True)
class Limits:
    timeout: float = 600.0  # wall seconds for the whole notebook; hard kill after it
    cell_timeout: float = 300.0  # nbclient per-cell timeout, seconds
    memory_mb: int = 2048  # address-space limit of each of the student's processes (RLIMIT_AS)
    max_output_mb: int = 50  # cap on the captured output, each file written and the input
    network: bool = False  # False: no network for the student's code

    def __post_init__(self) -> None:
        for name in ("timeout", "cell_timeout", "memory_mb", "max_output_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")


@dataclass
class RunResult:
    status: str  # "ok" | "timeout" | "memory" | "crashed" | "invalid"
    reason: str  # human-readable; "" when ok
    notebook: nbformat.NotebookNode | None  # the executed notebook, outputs included, if any
    seconds: float  # wall time of the whole run
    isolation: dict = field(default_factory=dict)  # what was actually enforced, by aspect


def run_notebook(
    notebook: Path,
    workdir: Path,
    limits: Limits = Limits(),  # noqa: B008 - frozen, so sharing the default is safe
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Execute `notebook` with `workdir` as its folder, in a sandbox under `limits`.

    `workdir` should be a fresh folder holding only what the student's code may see; the run
    adds `.home/` there (HOME, Jupyter, IPython, Matplotlib and numba caches, TMPDIR). `env`
    entries (e.g. CNNKIT_STUDENT_ID) are added to the child's minimal environment. Never
    raises for anything the notebook does: every outcome is a RunResult.
    """
    started = time.monotonic()
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise NotADirectoryError(f"workdir {workdir} is not a folder")
    try:
        source = _load(Path(notebook), limits.max_output_mb)
    except ValueError as exc:
        return RunResult("invalid", str(exc), None, time.monotonic() - started, {})
    argv, isolation = _command(limits, deadline=started + limits.timeout)
    cap = limits.max_output_mb * MB + len(source) + MB  # outputs + the notebook's own text
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
        env=_environment(workdir, env or {}),
        start_new_session=True,  # one process group to kill, whatever happens
    ) as proc:
        try:
            out, err, ending = _exchange(proc, source, started + limits.timeout + GRACE, cap)
        finally:
            _kill_tree(proc)
        err += _drain(proc.stderr)
    status, reason, nb = _verdict(out, err[-STDERR_TAIL:], ending, proc.returncode, limits)
    return RunResult(status, reason, nb, time.monotonic() - started, isolation)


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


# --------------------------------------------------------------------------- the child


def _command(limits: Limits, deadline: float) -> tuple[list[str], dict]:
    """The child's argv and the isolation it gets: namespaces if this machine allows them.
    `deadline` is in time.monotonic() seconds, a clock every process on the machine shares."""
    runner = [
        sys.executable,
        "-I",  # ignore PYTHON* variables and the working folder when importing
        "-B",
        str(RUNNER),
        f"--timeout={limits.timeout}",
        f"--deadline={deadline}",
        f"--cell-timeout={limits.cell_timeout}",
        f"--memory-mb={limits.memory_mb}",
        f"--max-output-mb={limits.max_output_mb}",
    ]
    isolation = {
        "memory": f"RLIMIT_AS {limits.memory_mb} MB per process",
        "files": f"RLIMIT_FSIZE {limits.max_output_mb} MB per file, no core dumps",
    }
    problem = _namespace_problem()
    if problem:
        return runner, isolation | {
            "network": "allowed by limits" if limits.network else f"unavailable: {problem}",
            "processes": f"process group and its descendants (no pid namespace: {problem})",
            "filesystem": f"unrestricted (no mount namespace: {problem})",
            "privileges": f"not dropped: as root it could raise its own limits ({problem})",
        }
    return _in_namespaces(runner, limits.network), isolation | {
        "network": "allowed by limits" if limits.network else "unshare --net (loopback only)",
        "processes": "pid namespace: the whole tree dies with it; own /proc",
        "filesystem": "/ read-only except workdir (mount namespace); other mounts unchanged",
        "privileges": "all capabilities dropped (setpriv)",
    }


def _in_namespaces(command: list[str], network: bool) -> list[str]:
    """`command` in new pid, mount (and, without `network`, net) namespaces, after the set-up
    that needs root's capabilities, then with every capability dropped."""
    tool = _tools()
    ip, mount = shlex.quote(tool["ip"]), shlex.quote(tool["mount"])
    setup = [] if network else [f"{ip} link set lo up"]
    setup += [  # workdir becomes its own mount, so / can go read-only without it
        f'{mount} --bind "$PWD" "$PWD"',
        f"{mount} -o remount,bind,ro /",
    ]
    drop = [tool["setpriv"], "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
    return [
        tool["unshare"],
        *([] if network else ["--net"]),
        *("--pid", "--fork", "--kill-child", "--mount-proc", "--"),
        *(tool["sh"], "-c", " && ".join(setup) + ' && exec "$@"', "sh"),
        *drop,
        *command,
    ]


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
                _in_namespaces(["true"], network=False), cwd=tmp, capture_output=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unshare failed: {exc}"
    if trial.returncode != 0:
        return f"unshare failed: {_shorten(trial.stderr.decode(errors='replace'))}"
    return None


def _environment(workdir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The child's whole environment: nothing of the grader's but PATH basics, LANG and thread
    counts. Every per-user folder lies inside workdir, numba's cache included, so one
    submission cannot poison another's compiled code."""
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
    env |= {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MB of address space per arena otherwise
    }
    env |= {name: os.environ.get(name, "1") for name in THREAD_VARS}
    return env | dict(extra)


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
) -> tuple[str, str, nbformat.NotebookNode | None]:
    """(status, reason, notebook) from what the child left: its report, its stderr tail, how
    the exchange ended and its exit code."""
    if ending == "timeout":
        why = f"still running {GRACE:g} s after the {limits.timeout:g} s wall-time limit"
        return "timeout", why + "; the process tree was killed", None
    if ending == "overflow":
        why = f"the executed notebook exceeded the {limits.max_output_mb} MB output limit"
        return "invalid", why + "; the process tree was killed", None
    stderr = err.decode("utf-8", errors="replace")
    head, _, body = bytes(out).partition(b"\n")
    if not body:
        why = f"the sandbox ended without a result ({describe_exit(exit_code)})"
        return (*_crash(stderr, "crashed", why + _last_error(stderr), limits), None)
    try:
        status, reason = _report(head)
        nb = _parse(body)
    except ValueError as exc:
        return "invalid", f"the executed notebook could not be read: {exc}", None
    memory_error = _memory_error(nb)
    if memory_error and status in ("ok", "crashed"):
        return "memory", f"{memory_error} ({_memory_limit(limits)})", nb
    return (*_crash(stderr, status, reason, limits), nb)


def _report(line: bytes) -> tuple[str, str]:
    """(status, reason) from the runner's first line, checked like any untrusted input."""
    try:
        report = json.loads(line)
        status, reason = report["status"], report["reason"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"bad report line ({type(exc).__name__})") from None
    if status not in STATUSES or not isinstance(reason, str):
        raise ValueError(f"bad report line (status {status!r})")
    return status, reason


def _crash(stderr: str, status: str, reason: str, limits: Limits) -> tuple[str, str]:
    """A crash whose stderr shows memory exhaustion becomes ('memory', reason + the limit)."""
    if status == "crashed" and any(hint in stderr for hint in MEMORY_HINTS):
        return "memory", f"{reason} ({_memory_limit(limits)})"
    return status, reason


def _memory_limit(limits: Limits) -> str:
    return f"memory limit: {limits.memory_mb} MB of address space per process"


def _memory_error(nb: nbformat.NotebookNode) -> str | None:
    """'cell N: <error>' for the first error output showing memory exhaustion: a MemoryError,
    or another error whose message says so (an extension module that cannot be mapped)."""
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            error = f"{out.get('ename')}: {out.get('evalue')}"
            if out.get("output_type") == "error" and any(hint in error for hint in MEMORY_HINTS):
                return _shorten(f"cell {index + 1}: {error}")
    return None


def _last_error(stderr: str) -> str:
    """'; <line>' for the last line of `stderr` naming an error or exception, else ''."""
    lines = [line for line in stderr.splitlines() if re.search(r"(Error|Exception)\b", line)]
    return f"; {_shorten(lines[-1], 200)}" if lines else ""
