"""The sandbox's child: execute one notebook inside the student's process tree and report.

autograder.sandbox starts this file as a script with `python -I`, so neither the working folder
(the student's) nor environment variables can shadow the modules it imports. It reads the
notebook (nbformat JSON, already validated by the parent) from stdin and writes to stdout one
line of JSON, {"status": ..., "reason": ...}, followed by the executed notebook's JSON. The
parent trusts none of it: it caps what it reads and parses it as data.

The process-tree helpers at the end serve both sides (the parent imports them); like the rest
of this file they need nothing but the standard library and nbclient.

Order matters in main(): the resource limits and the umask come first, so the kernel and
everything the student starts inherit them; the result channel is moved off fd 1 before the
kernel starts. The runner may run as the student's unprivileged uid (see autograder.sandbox):
it needs nothing but the interpreter, its packages and the working folder.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

# jsonschema, which nbformat imports, builds an RFC 3987 grammar when rfc3987_syntax is
# installed: about 1 s of every run, for IRI format checks no notebook schema makes.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: E402

MB = 2**20
PR_SET_DUMPABLE = 4  # from <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 10  # sweeps of kill_descendants, for processes forked while it kills


def main() -> None:
    args = _parse_args()
    _apply_limits(args.memory_mb, args.max_output_mb)
    # Files the student makes are its uid's alone unless it says otherwise: some mounts
    # (/dev/shm) are shared with other runs, which run as other uids.
    os.umask(0o077)
    _guard_runner()
    if os.getpid() == 1:
        _become_init()
    # A private copy of stdout carries the result; fd 1 now points at stderr, and the kernel
    # (which inherits fds 0-2 only) can no longer write into the result.
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    nb = nbformat.reads(sys.stdin.buffer.read().decode("utf-8"), as_version=4)
    status, reason = _execute(nb, args, args.deadline - time.monotonic())
    kill_descendants(os.getpid())  # whatever the student left running, daemons included
    result.write(json.dumps({"status": status, "reason": reason}).encode() + b"\n")
    result.write(nbformat.writes(nb).encode())
    result.close()
    os._exit(0)  # skip the interpreter's teardown (~0.5 s): the parent kills what is left


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, required=True, help="wall seconds, whole notebook")
    parser.add_argument("--deadline", type=float, required=True, help="time.monotonic() to stop at")
    parser.add_argument("--cell-timeout", type=float, required=True, help="seconds per cell")
    parser.add_argument("--memory-mb", type=int, required=True, help="RLIMIT_AS per process, MB")
    parser.add_argument("--max-output-mb", type=int, required=True, help="output and file cap, MB")
    return parser.parse_args()


def _apply_limits(memory_mb: int, max_output_mb: int) -> None:
    """Soft and hard limits alike: without CAP_SYS_RESOURCE the student cannot raise them."""
    for limit, value in (
        (resource.RLIMIT_AS, memory_mb * MB),
        (resource.RLIMIT_FSIZE, max_output_mb * MB),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))


def _guard_runner() -> None:
    """Non-dumpable: without CAP_SYS_PTRACE the student's processes cannot ptrace the runner or
    open its file descriptors through /proc/<pid>/fd (the result channel among them); execve
    makes the kernel dumpable again. Child subreaper: processes the student orphans (a daemon,
    a double fork) stay below the runner, where kill_descendants finds them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _become_init() -> None:
    """As pid 1 of a fresh pid namespace, fork: the child goes on as the runner and this process
    only reaps orphans, then exits with the runner's status (128 + signal when killed). pid 1
    ignores signals sent from inside its namespace, so a notebook that kills its parent must
    hit a runner that can die; when this init exits, the kernel kills the whole namespace."""
    runner = os.fork()
    if runner == 0:
        return
    while True:
        pid, status = os.wait()
        if pid == runner:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


def _execute(
    nb: nbformat.NotebookNode, args: argparse.Namespace, seconds_left: float
) -> tuple[str, str]:
    """Run every cell of `nb` in place; (status, reason) of the run. Cell errors are outputs,
    not failures: judging them is the grader's job."""
    client = _SandboxClient(nb, args.cell_timeout, args.max_output_mb)
    why = f"was still running at the {args.timeout:g} s wall-time limit; the kernel was killed"
    watchdog = threading.Timer(max(seconds_left, 0.0), client.stop, ("timeout", why))
    watchdog.daemon = True
    watchdog.start()
    try:
        client.execute()
        verdict = ("ok", "")
    except CellTimeoutError:
        verdict = ("timeout", f"{client.where()} ran past the {args.cell_timeout:g} s cell limit")
    except DeadKernelError:
        verdict = ("crashed", f"the kernel died during {client.where()} ({client.kernel_exit()})")
    except Exception as exc:  # whatever stopped the run becomes its reason
        verdict = ("crashed", f"execution failed at {client.where()}: {type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
    return client.stopped or verdict


class _SandboxClient(NotebookClient):
    """nbclient's executor, plus a kill switch for the kernel and a cap on captured output."""

    def __init__(self, nb: nbformat.NotebookNode, cell_timeout: float, max_output_mb: int):
        super().__init__(
            nb,
            timeout=max(1, math.ceil(cell_timeout)),
            kernel_name="python3",
            allow_errors=True,
            shutdown_kernel="immediate",  # a stuck kernel gets no graceful shutdown to ignore
            shell_timeout_interval=1,  # seconds between liveness checks while waiting
            resources={"metadata": {"path": os.getcwd()}},
        )
        self.max_output_mb = max_output_mb
        self.output_bytes = 0
        self.cell_index: int | None = None
        self.kernel = None  # the kernel's Popen, once started
        self.stopped: tuple[str, str] | None = None  # (status, reason) when stop() ended the run

    async def async_start_new_kernel(self, **kwargs) -> None:
        await super().async_start_new_kernel(**kwargs)
        self.kernel = self.km.provisioner.process
        if self.stopped:  # the watchdog fired while the kernel was starting
            self._kill_kernel()

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        self.cell_index = cell_index
        return await super().async_execute_cell(cell, cell_index, *args, **kwargs)

    def output(self, outs, msg, display_id, cell_index):
        """Count each output's JSON size (bytes); past the cap, replace the cell's outputs
        with a notice and stop the kernel."""
        if self.stopped:
            return None
        self.output_bytes += len(json.dumps(msg["content"]))
        if self.output_bytes > self.max_output_mb * MB:
            notice = f"[output stopped: more than {self.max_output_mb} MB]\n"
            outs[:] = [nbformat.v4.new_output("stream", name="stderr", text=notice)]
            self.stop("invalid", f"produced more than {self.max_output_mb} MB of output")
            return None
        return super().output(outs, msg, display_id, cell_index)

    def stop(self, status: str, why: str) -> None:
        """Kill the kernel's process group; the run ends with `status` and '<cell> <why>'.
        Killing, not interrupting: a numba-compiled loop ignores interrupts."""
        if self.stopped is None:
            self.stopped = (status, f"{self.where()} {why}")
        self._kill_kernel()

    def _kill_kernel(self) -> None:
        if self.kernel is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.kernel.pid, signal.SIGKILL)  # the kernel leads its own session

    def where(self) -> str:
        """The cell running now, numbered from 1 as a reader counts them."""
        return (
            "start-up (before cell 1)" if self.cell_index is None else f"cell {self.cell_index + 1}"
        )

    def kernel_exit(self) -> str:
        return describe_exit(None if self.kernel is None else self.kernel.poll())


def describe_exit(code: int | None) -> str:
    """'killed by SIGKILL' for a negative Popen code or a shell-style 128 + signal, else
    'exit status N'."""
    if code is None:
        return "exit status unknown"
    number = -code if code < 0 else code - 128
    with contextlib.suppress(ValueError):
        if number > 0:
            return f"killed by {signal.Signals(number).name}"
    return f"exit status {code}"


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state letter)} of every process this /proc shows."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[0])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return table


def descendants(root: int) -> list[int]:
    """Pids of the living (not zombie) processes below `root`."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, state) in table.items():
        if state not in "ZX":
            children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_descendants(root: int) -> list[int]:
    """SIGKILL every process below `root`, sweeping again for any forked meanwhile; the pids
    killed."""
    killed: list[int] = []
    for _ in range(KILL_ROUNDS):
        victims = descendants(root)
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed += victims
    return killed


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in "ZX"


if __name__ == "__main__":
    main()
