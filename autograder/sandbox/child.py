"""The sandbox's child: execute one notebook inside the student's process tree and report.

autograder.sandbox.run starts this file as a script with `python -I` (or its forking server calls
`run`), so neither the working folder (the student's) nor environment variables can shadow the
modules it imports. It reads the notebook (nbformat JSON, already validated by the parent)
from stdin and writes to stdout a line {"started": index} as each code cell starts (so that the
parent knows where a run that died stopped), then one line of JSON, {"status", "reason", "cell",
"truncated"}, followed by the executed notebook's JSON. The parent trusts none of it: it caps
what it reads and parses it as data. The captured output is cut to the limits as it comes
(`_OutputCap`), so that a flood costs neither the run nor the grader's memory.

The process-tree helpers at the end serve both sides (the parent imports them); like the rest
of this file they need nothing but the standard library and nbclient.

Order matters in run(): the resource limits and the umask come first, so the kernel and
everything the student starts inherit them; the result channel is moved off fd 1 before the
kernel starts. The kernel is a fork of the runner (`KernelFork`), made before the runner has a
thread or an event loop, rather than a new interpreter: under the forking server
(`forkserver.py`, which calls `run`) its modules are imported already. The runner may run as the
student's unprivileged uid (see autograder.sandbox): it needs nothing but the interpreter, its
packages and the working folder.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import BinaryIO, NoReturn

# jsonschema, which nbformat imports, builds an RFC 3987 grammar when rfc3987_syntax is
# installed: about 1 s of every run, for IRI format checks no notebook schema makes.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from jupyter_client.asynchronous import AsyncKernelClient  # noqa: E402
from jupyter_client.provisioning import LocalProvisioner  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: E402

MB = 2**20
PR_SET_DUMPABLE = 4  # from <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 10  # sweeps of kill_descendants, for processes forked while it kills
REAP_SECONDS = 1.0  # how long a killed kernel may take to die before polling takes over
CELL_SHARE = 10  # a cell may keep 1/CELL_SHARE of the notebook's output cap (at least 1 MB)
ERROR_CHARS = 2000  # of an error's message and of each traceback line kept past the cap
# What the grader's cells import in the kernel (the hidden tests, the output checks' harvest).
GRADER_MODULES = ("autograder.outputs",)


def main() -> None:
    run(_parse_args())


def run(args: argparse.Namespace) -> NoReturn:
    """Execute the notebook on stdin under the limits in `args` and report on the saved copy of
    stdout. The caller has set up the process: namespaces, uid, environment, working folder."""
    _apply_limits(args.memory_mb, args.max_output_mb, args.max_processes)
    # Files the student makes are its uid's alone unless it says otherwise: some writable
    # mounts may be shared with other runs, which run as other uids.
    os.umask(0o077)
    _guard_runner()
    if os.getpid() == 1:
        _become_init()
    # A private copy of stdout carries the result; fd 1 now points at stderr, and the kernel
    # (which keeps fds 0-2 only) can no longer write into the result.
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    # Forked before the notebook is read, so that the kernel's memory holds none of its hidden
    # tests, and before any thread or event loop exists in this process.
    kernel = KernelFork()
    nb = nbformat.reads(sys.stdin.buffer.read().decode("utf-8"), as_version=4)
    report = _execute(nb, args, kernel, args.deadline - time.monotonic(), result)
    kill_descendants(os.getpid())  # whatever the student left running, daemons included
    result.write(json.dumps(report).encode() + b"\n")
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
    parser.add_argument("--max-processes", type=int, required=True, help="RLIMIT_NPROC if not root")
    return parser.parse_args()


def _apply_limits(memory_mb: int, max_output_mb: int, max_processes: int) -> None:
    """Soft and hard limits alike: without CAP_SYS_RESOURCE the student cannot raise them.
    The address space allowed is `memory_mb` on top of this process's own (the interpreter
    and the modules it has loaded, which the kernel, a fork of it, starts with): the student's
    headroom does not depend on what a forking server preloaded. Processes are limited only
    for a uid other than root's: RLIMIT_NPROC counts every process of the uid on the machine."""
    limits = [
        (resource.RLIMIT_AS, memory_mb * MB + _address_space()),
        (resource.RLIMIT_FSIZE, max_output_mb * MB),
        (resource.RLIMIT_CORE, 0),
    ]
    if os.getuid() != 0:
        limits.append((resource.RLIMIT_NPROC, max_processes))
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))


def _address_space() -> int:
    """This process's virtual memory size in bytes (VmSize), 0 if /proc cannot say."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmSize:")).split()[1]) * 1024
    return 0


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
    nb: nbformat.NotebookNode,
    args: argparse.Namespace,
    kernel: KernelFork,
    seconds_left: float,
    progress: BinaryIO,
) -> dict:
    """Run every cell of `nb` in place in `kernel`, writing a line {"started": index} to
    `progress` before each code cell; the report of the run: {"status", "reason", "cell" (the
    index of the cell the run stopped in, None when it ran to its end), "truncated" ({index:
    bytes of output cut})}. Cell errors are outputs, not failures: judging them is the
    grader's job."""
    client = _SandboxClient(nb, args.cell_timeout, args.max_output_mb, kernel, progress)
    why = f"was still running at the {args.timeout:g} s wall-time limit; the kernel was killed"
    watchdog = threading.Timer(max(seconds_left, 0.0), client.stop, ("timeout", why))
    watchdog.daemon = True
    watchdog.start()
    stopped_in = None
    try:
        client.execute()
        verdict = ("ok", "")
    except CellTimeoutError:
        stopped_in = client.cell_index
        verdict = ("timeout", f"{client.where()} ran past the {args.cell_timeout:g} s cell limit")
    except DeadKernelError:
        stopped_in = client.cell_index
        verdict = ("crashed", f"the kernel died during {client.where()} ({client.kernel_exit()})")
    except Exception as exc:  # whatever stopped the run becomes its reason
        stopped_in = client.cell_index
        verdict = ("crashed", f"execution failed at {client.where()}: {type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
    status, reason = client.stopped or verdict
    if client.stopped:
        stopped_in = client.cell_index
    truncated = {str(index): cut for index, cut in client.cap.cut.items()}
    return {"status": status, "reason": reason, "cell": stopped_in, "truncated": truncated}


class _OutputCap:
    """Keeps a notebook's captured output within `total` bytes and each cell's within `per_cell`
    (text for streams, the message's JSON for the rest): a cell keeps the first half of its
    share and, of the streams that followed, the last half, with a line between them saying how
    much was cut. Errors are always kept, shortened, since they decide whether a test passed."""

    def __init__(self, total: int, per_cell: int):
        self.total, self.half = total, per_cell // 2
        self.used = 0  # bytes kept in the whole notebook
        self.cut: dict[int, int] = {}  # cell index -> bytes dropped
        self._cell: int | None = None
        self._kept = 0  # bytes kept at the head of the current cell
        self._tail: collections.deque[list[str]] = collections.deque()  # [name, text]
        self._tail_size = 0

    def admit(self, cell_index: int, msg: dict) -> dict | None:
        """The message to record (`msg`, or the part of it that fits), or None when it is cut."""
        if cell_index != self._cell:
            self._cell, self._kept = cell_index, 0
            self._tail.clear()
            self._tail_size = 0
        content, kind = msg["content"], msg["msg_type"]
        stream = kind == "stream" and isinstance(content.get("text"), str)
        size = len(content["text"]) if stream else len(json.dumps(content))
        room = max(min(self.half - self._kept, self.total - self.used), 0)
        if cell_index in self.cut:
            room = 0  # once a cell has lost output, what follows belongs to its tail
        if size <= room or kind == "error":
            self._kept, self.used = self._kept + size, self.used + size
            return msg if size <= room else _shortened_error(msg)
        if not stream:
            self.cut[cell_index] = self.cut.get(cell_index, 0) + size
            return None
        head, rest = content["text"][:room], content["text"][room:]
        self._kept, self.used = self._kept + len(head), self.used + len(head)
        self.cut[cell_index] = self.cut.get(cell_index, 0) + len(rest)
        self._add_tail(content.get("name", "stdout"), rest)
        return {**msg, "content": {**content, "text": head}} if head else None

    def _add_tail(self, name: str, text: str) -> None:
        self._tail.append([name, text[-self.half :] if self.half else ""])
        self._tail_size += len(self._tail[-1][1])
        self._trim_tail(self.half)

    def _trim_tail(self, limit: int) -> None:
        """Drop the oldest tail text until at most `limit` characters are left."""
        while self._tail_size > limit:
            excess = self._tail_size - limit
            first = self._tail[0]
            if len(first[1]) <= excess:
                self._tail.popleft()
                self._tail_size -= len(first[1])
            else:
                first[1] = first[1][excess:]
                self._tail_size -= excess

    def finish(self, cell_index: int, outputs: list) -> None:
        """Append the cut notice and the kept tail to the outputs of cell `cell_index`."""
        if cell_index != self._cell or cell_index not in self.cut:
            return
        self._trim_tail(max(self.total - self.used, 0))
        self.used += self._tail_size
        self.cut[cell_index] -= self._tail_size
        notice = (
            f"\n[cnnkit: {amount(self.cut[cell_index])} of this cell's output was cut here; "
            "its first and last parts are kept]\n"
        )
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=notice))
        for name, text in self._tail:
            last = outputs[-1]
            if last.get("output_type") == "stream" and last.get("name") == name:
                last.text += text
            else:
                outputs.append(nbformat.v4.new_output("stream", name=name, text=text))
        self._tail.clear()
        self._tail_size = 0


def _shortened_error(msg: dict) -> dict:
    """An error message with its value and traceback cut to a readable size."""
    content = dict(msg["content"])
    content["evalue"] = str(content.get("evalue", ""))[:ERROR_CHARS]
    content["traceback"] = [line[:ERROR_CHARS] for line in content.get("traceback", [])[-20:]]
    return {**msg, "content": content}


class _SandboxClient(NotebookClient):
    """nbclient's executor, plus a kill switch for the kernel, a cap on captured output and a
    progress line per cell."""

    def __init__(
        self,
        nb: nbformat.NotebookNode,
        cell_timeout: float,
        max_output_mb: int,
        fork: KernelFork,
        progress: BinaryIO,
    ):
        super().__init__(
            nb,
            timeout=max(1, math.ceil(cell_timeout)),
            timeout_func=_cell_timeout(cell_timeout),
            kernel_name="python3",
            allow_errors=True,
            shutdown_kernel="immediate",  # a stuck kernel gets no graceful shutdown to ignore
            shell_timeout_interval=1,  # seconds between liveness checks while waiting
            resources={"metadata": {"path": os.getcwd()}},
        )
        total = max_output_mb * MB
        self.cap = _OutputCap(total, min(total, max(total // CELL_SHARE, MB)))
        self.fork = fork
        self.progress = progress
        self.cell_index: int | None = None
        self.kernel = None  # the kernel's Popen, once started
        self.stopped: tuple[str, str] | None = None  # (status, reason) when stop() ended the run

    async def async_start_new_kernel(self, **kwargs) -> None:
        self.km.kernel_id = self.km.kernel_id or str(uuid.uuid4())
        self.km.provisioner = _ForkProvisioner(
            kernel_id=self.km.kernel_id, kernel_spec=self.km.kernel_spec, parent=self.km
        )
        self.km.provisioner.fork = self.fork
        self.km.client_factory = _ReadyClient
        await super().async_start_new_kernel(**kwargs)
        self.kernel = self.km.provisioner.process
        if self.stopped:  # the watchdog fired while the kernel was starting
            self._kill_kernel()

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        self.cell_index = cell_index
        if cell.cell_type == "code" and cell.source.strip():
            self.progress.write(json.dumps({"started": cell_index}).encode() + b"\n")
            self.progress.flush()
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        finally:
            if cell.cell_type == "code":
                self.cap.finish(cell_index, cell.outputs)

    def output(self, outs, msg, display_id, cell_index):
        """Record the output if the cap admits it."""
        if self.stopped:
            return None
        admitted = self.cap.admit(cell_index, msg)
        if admitted is None:
            return None
        return super().output(outs, admitted, display_id, cell_index)

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


def _cell_timeout(seconds: float):
    """nbclient's timeout_func: `seconds` for every cell but one marked `{"cnnkit": {"timeout":
    false}}` (the grader's output checks, which bound each case themselves), which runs until
    the notebook's wall-time limit."""

    def timeout(cell) -> int | None:
        if cell.metadata.get("cnnkit", {}).get("timeout") is False:
            return None
        return max(1, math.ceil(seconds))

    return timeout


class KernelFork:
    """A kernel process forked from the runner, waiting for its connection file.

    Forked before the runner starts a thread, an event loop or a ZeroMQ context, it inherits
    only the runner's modules and limits: with the kernel's modules already imported (a
    forking server can import them once for many runs), it starts in a fraction of the time
    of `python -m ipykernel_launcher`. It also has the Popen methods jupyter_client's
    LocalProvisioner calls on a kernel process.
    """

    stdin = stdout = stderr = None

    def __init__(self) -> None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write)
            _be_kernel(read)
        os.close(read)
        self.pid, self._go = pid, write
        self.returncode: int | None = None

    def start(self, connection_file: str) -> None:
        """Hand the kernel its connection file: it starts serving."""
        os.write(self._go, connection_file.encode() + b"\n")
        os.close(self._go)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            return self.returncode
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _be_kernel(go: int) -> NoReturn:
    """The forked kernel: a session of its own, dumpable like any program it could have
    exec'd (its own /proc entries readable by the student), stdin empty and no descriptor of
    the runner's but stdout and stderr; it serves once the runner sends the connection file,
    and exits if the runner closes the pipe first."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    with os.fdopen(go, "rb") as pipe:
        connection_file = pipe.readline().decode().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    if not connection_file:
        os._exit(0)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # seeded once where it was imported: every fork would share it
        numpy_random.seed()
    try:
        from ipykernel.kernelapp import IPKernelApp

        _bind_grader_modules()
        # what `python -m ipykernel_launcher -f <file>` would show; the command history in
        # memory, not in a database on the run's disk, which the student may fill
        launcher = importlib.util.find_spec("ipykernel_launcher").origin
        sys.argv = [launcher, "-f", connection_file, "--HistoryManager.hist_file=:memory:"]
        IPKernelApp.launch_instance(argv=sys.argv[1:])
    finally:
        os._exit(0)


def import_grader_modules() -> None:
    """Import GRADER_MODULES, those installed (the forking server does it once for every run)."""
    for name in GRADER_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _bind_grader_modules() -> None:
    """import_grader_modules, then put the working folder last on sys.path, where IPython would
    put it ahead of the installed packages: a module a cell writes there, named like the kit's
    or a library's, is never the one imported. (A package found through an editable install's
    finder, which Python asks after sys.path, is safe once imported.)"""
    import_grader_modules()
    sys.path.append("")  # IPython adds the working folder only when "" is not there yet


class _ForkProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching the KernelFork instead of a command."""

    fork: KernelFork

    async def launch_kernel(self, cmd: list[str], **kwargs) -> dict:
        self.fork.start(cmd[cmd.index("-f") + 1])
        self.process = self.fork
        self.pid = self.pgid = self.fork.pid  # it leads its own session
        self.cwd = kwargs.get("cwd", os.getcwd())
        return self.connection_info

    async def kill(self, restart: bool = False) -> None:
        """SIGKILL the kernel's group and reap the kernel at once: the kernel manager would
        look again only 0.1 s later."""
        await super().kill(restart)
        deadline = time.monotonic() + REAP_SECONDS
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.001)


class _ReadyClient(AsyncKernelClient):
    """jupyter_client's kernel client, ready as soon as the kernel answers kernel_info on the
    shell and iopub channels, without the final 0.2 s spent discarding iopub messages: nbclient
    matches every message to the request it answers and skips the rest."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        while True:
            self.kernel_info()
            with contextlib.suppress(Empty):
                reply = await self.shell_channel.get_msg(timeout=1)
                if reply["msg_type"] == "kernel_info_reply":
                    await self.iopub_channel.get_msg(timeout=0.2)  # iopub is connected too
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


def amount(size: int) -> str:
    """'3.2 MB' or '45 KB' for a number of bytes."""
    return f"{size / MB:.1f} MB" if size >= MB else f"{max(size, 1) / 1024:.0f} KB"


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
