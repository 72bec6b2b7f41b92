"""A forking server for sandboxes: the modules of the runner and the kernel imported once, then
one fork per notebook run, which enters its namespaces and drops its privileges itself.

autograder.sandbox starts this file (`python -I -B`, as root) with one end of a Unix socket
pair and the grader's pid as its arguments (and `--kernels`: load cnn_core's numba kernels
once for every run, `_load_kernels`) and talks to it one run at a time:

- the grader sends a message with three descriptors: the run's stdin, stdout and stderr;
- the server forks the run's top process and answers with its pid, then with its exit code
  (negative: killed by that signal) once it has ended; it reaps the process only when the next
  message (or the end of the socket) comes, so that the pid names nothing else while the
  grader may still signal its process group.

The top process reads its request from stdin (a length line, then JSON: the working folder,
uid, environment, mount set-up and the runner's options), so nothing about a student stays in
this server's memory, which every later run inherits. Then, like `unshare --net --ipc --pid
--fork --kill-child --mount-proc` and `setpriv` in the path that starts a new interpreter:

1. new mount (mounts private) and IPC namespaces and, unless the network is allowed, a new
   network namespace; the grader's set-up commands run there as root (sh);
2. a new pid namespace, whose init it forks: the init mounts a fresh /proc, drops every
   capability (bounding, ambient, inheritable, permitted, effective), takes the uid and gid
   without groups, sets no_new_privs, checks in /proc/self/status that no capability is left,
   and becomes the runner (`child.run`), reading the notebook from stdin.

Every process here dies with its parent (PR_SET_PDEATHSIG): the server with the grader thread
that started it, a run with the server, the namespace's init with the run's top process (set
again once the init has changed uid, which clears it), and the rest of the run with the init.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import NoReturn


def _runner() -> ModuleType:
    """The runner module next to this file (not whichever `autograder` is installed)."""
    path = Path(__file__).with_name("child.py")
    spec = importlib.util.spec_from_file_location("cnnkit_sandbox_child", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_child = _runner()  # first: it keeps jsonschema from building its RFC 3987 grammar

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CLONE_NEWNS = 0x00020000  # from <linux/sched.h>
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8  # from <linux/mount.h>
CAPABILITY_VERSION_3 = 0x20080522  # from <linux/capability.h>
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
# What notebooks import at once, loaded here once instead of in every run. Each is optional.
# cnn_core only with --kernels (`_load_kernels`): a module that compiles with cache=True fixes
# its cache folder when it is imported, and the server's must be the grader's kernel cache.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "numpy",
    "matplotlib.pyplot",
    "matplotlib_inline.backend_inline",
    "numba",
)

_libc = ctypes.CDLL(None, use_errno=True)


def main() -> None:
    server = socket.socket(fileno=int(sys.argv[1]))
    _die_with(int(sys.argv[2]))
    _preload()
    if "--kernels" in sys.argv[3:]:
        _load_kernels()
    top = None
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(server, 16, 3)
        except OSError:
            return
        if top is not None:
            # reaped only now that the grader has moved on: until then the grader may still
            # signal its process group, and the pid must not name anything else
            os.waitpid(top, 0)
            top = None
        if len(fds) != 3:  # the grader closed its end (or sent nonsense): stop serving
            return
        sys.stdout.flush()  # nothing buffered here may reach a run's pipes
        sys.stderr.flush()
        me, top = os.getpid(), os.fork()
        if top == 0:
            server.close()
            _top(fds, me)
        for fd in fds:
            os.close(fd)
        server.sendall(f"{top}\n".encode())
        ended = os.waitid(os.P_PID, top, os.WEXITED | os.WNOWAIT)
        code = ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status
        server.sendall(f"{code}\n".encode())


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)


def _load_kernels() -> None:
    """cnn_core's numba kernels, loaded from the cache folder in $NUMBA_CACHE_DIR (or compiled,
    if they are not there) and detached from it: each run finds them ready, and one that
    compiles a new signature keeps it in memory, never writing to that folder. Each run has
    the same cnn_core, as it was before any student code ran. What fails here is only slower:
    a kernel not loaded is compiled by the run that calls it."""
    try:
        from cnn_core import _warm_up
    except Exception as exc:
        print(f"cnn_core not loaded: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    for group in range(len(_warm_up.GROUPS)):
        try:
            _warm_up.compile_kernels(group)
        except Exception as exc:
            print(f"kernel group {group} not loaded: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        _warm_up.stop_caching()
    except Exception as exc:  # a run that compiles a new signature then fails to save it
        print(f"cnn_core's kernels still cached: {type(exc).__name__}: {exc}", file=sys.stderr)
    _child.import_grader_modules()  # they import cnn_core: every kernel imports them first


def _arm_death_signal() -> None:
    """SIGKILL this process when its parent (the thread that forked it) ends."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")


def _die_with(parent: int) -> None:
    """_arm_death_signal, and exit at once if `parent`, the pid that started this process, is
    already gone: the signal only covers a death after it is armed."""
    _arm_death_signal()
    if os.getppid() != parent:
        os._exit(1)


def _die_with_top(lifeline: int) -> None:
    """_die_with for the init, whose parent, in another pid namespace, shows as pid 0: the
    top's `lifeline` pipe, which it never writes, reads as EOF once the top has gone."""
    _arm_death_signal()
    if select.select([lifeline], [], [], 0)[0]:
        os._exit(1)


# --------------------------------------------------------------------------- one run


def _top(fds: list[int], server: int) -> NoReturn:
    """The run's top process (root, this server's pid namespace): namespaces, set-up, then
    the init of a new pid namespace; exits with the init's status."""
    try:
        os.setsid()
        _die_with(server)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        request = _read_request()
        for procs in request.get("cgroups", []):  # first: all the run starts is counted there
            Path(procs).write_text(str(os.getpid()))
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["workdir"])
        _reread_environment()  # numba reads a .numba_config.yaml here, as a new kernel would
        _unshare(CLONE_NEWNS | CLONE_NEWIPC | (0 if request["network"] else CLONE_NEWNET))
        subprocess.run(
            [request["sh"], "-c", " && ".join(request["setup"])],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        os.chdir(request["workdir"])  # re-enter by path: the writable mount found there now
        _unshare(CLONE_NEWPID)
        lifeline, held = os.pipe()
        init = os.fork()
        if init == 0:
            os.close(held)
            _init(request, lifeline)
        os.close(lifeline)
        code = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
    except BaseException as exc:  # the grader reads why on stderr
        print(f"sandbox set-up failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(128 - code if code < 0 else code)


def _read_request() -> dict:
    """The request on stdin: a line holding its length in bytes, then that much JSON."""
    length = b""
    while not length.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise EOFError("no request on stdin")
        length += byte
    data, size = b"", int(length)
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            raise EOFError("request cut short")
        data += chunk
    return json.loads(data)


def _reread_environment() -> None:
    """Settings the preloaded modules took from this server's environment, taken again from
    the run's: numba's (cache folder, threads) and tempfile's folder."""
    tempfile.tempdir = None
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.core.config.reload_config()


def _init(request: dict, lifeline: int) -> NoReturn:
    """pid 1 of the run's pid namespace: its own /proc, every privilege dropped, then the
    runner (which forks the runner proper and stays as the namespace's reaper)."""
    try:
        _die_with_top(lifeline)
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        _check(_libc.mount(b"proc", b"/proc", b"proc", flags, None), "mount /proc")
        _drop_privileges(int(request["uid"]))
        _die_with_top(lifeline)  # again: the change of uid cleared the death signal
        os.close(lifeline)
    except BaseException as exc:
        print(f"sandbox set-up failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    _child.run(argparse.Namespace(**request["runner"]))


def _drop_privileges(uid: int) -> None:
    """Become `uid` (gid too, no groups) with no capability in any set and no_new_privs; raise
    unless /proc/self/status confirms every capability set is empty."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "PR_CAP_AMBIENT")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    status = Path("/proc/self/status").read_text().splitlines()
    left = [line for line in status if line.startswith(CAP_FIELDS) and int(line.split()[1], 16)]
    if left or os.getresuid() != (uid,) * 3 or os.getresgid() != (uid,) * 3 or os.getgroups():
        raise PermissionError(f"privileges not dropped: {left or 'uid, gid or groups'}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _check(result: int, what: str) -> None:
    """OSError naming `what` and errno when a libc call returned non-zero."""
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    main()
