"""A forking server for sandboxes: the modules of the runner and the kernel imported once, then
one fork per notebook run, which enters its namespaces and drops its privileges itself.

autograder.sandbox starts this file (`python -I -B`, as root) with one end of a Unix socket
pair as its argument and talks to it one run at a time:

- the grader sends a message with three descriptors: the run's stdin, stdout and stderr;
- the server forks the run's top process and answers with its pid, then with its exit code
  (negative: killed by that signal) once it has ended.

The top process reads its request from stdin (a length line, then JSON: the working folder,
uid, environment, mount set-up and the runner's options), so nothing about a student stays in
this server's memory, which every later run inherits. Then, like `unshare --net --pid --fork
--kill-child --mount-proc` and `setpriv` in the path that starts a new interpreter:

1. a new mount namespace (mounts private) and, unless the network is allowed, a new network
   namespace; the grader's set-up commands run there as root (sh);
2. a new pid namespace, whose init it forks: the init mounts a fresh /proc, drops every
   capability (bounding, ambient, inheritable, permitted, effective), takes the uid and gid
   without groups, sets no_new_privs, checks in /proc/self/status that no capability is left,
   and becomes the runner (`_run_child.run`), reading the notebook from stdin.

Every process here dies with its parent (PR_SET_PDEATHSIG): the server with the grader thread
that started it, a run with the server, the namespace's init with the run's top process (set
again once the init has changed uid, which clears it), and the rest of the run with the init.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from autograder import _run_child

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CLONE_NEWNS = 0x00020000  # from <linux/sched.h>
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8  # from <linux/mount.h>
CAPABILITY_VERSION_3 = 0x20080522  # from <linux/capability.h>
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
# What notebooks import at once, loaded here once instead of in every run. numba is imported
# but not cnn_core: a module that compiles with cache=True fixes its cache folder when it is
# imported, and each run has its own. Each is optional.
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
    _die_with_parent()
    _preload()
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(server, 16, 3)
        except (ConnectionError, OSError):
            return
        if len(fds) != 3:  # the grader closed its end (or sent nonsense): stop serving
            return
        sys.stdout.flush()  # nothing buffered here may reach a run's pipes
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            _top(fds)
        for fd in fds:
            os.close(fd)
        server.sendall(f"{pid}\n".encode())
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        server.sendall(f"{code}\n".encode())


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)


def _die_with_parent() -> None:
    """SIGKILL this process when its parent (thread) ends; at once if it already has."""
    parent = os.getppid()
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    if os.getppid() != parent:
        os._exit(1)


# --------------------------------------------------------------------------- one run


def _top(fds: list[int]) -> NoReturn:
    """The run's top process (root, this server's pid namespace): namespaces, set-up, then
    the init of a new pid namespace; exits with the init's status."""
    try:
        os.setsid()
        _die_with_parent()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        request = _read_request()
        os.environ.clear()
        os.environ.update(request["env"])
        _reread_environment()
        os.chdir(request["workdir"])
        _unshare(CLONE_NEWNS | (0 if request["network"] else CLONE_NEWNET))
        subprocess.run(
            [request["sh"], "-c", " && ".join(request["setup"])],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        os.chdir(request["workdir"])  # re-enter by path: the writable mount found there now
        _unshare(CLONE_NEWPID)
        init = os.fork()
        if init == 0:
            _init(request)
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


def _init(request: dict) -> NoReturn:
    """pid 1 of the run's pid namespace: its own /proc, every privilege dropped, then the
    runner (which forks the runner proper and stays as the namespace's reaper)."""
    try:
        _die_with_parent()
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        _check(_libc.mount(b"proc", b"/proc", b"proc", flags, None), "mount /proc")
        _drop_privileges(int(request["uid"]))
        _die_with_parent()  # again: the change of uid cleared it
    except BaseException as exc:
        print(f"sandbox set-up failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    _run_child.run(argparse.Namespace(**request["runner"]))


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
