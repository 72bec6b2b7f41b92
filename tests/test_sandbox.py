"""autograder.sandbox: one notebook in its own process tree, under limits, returned as data."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from autograder.sandbox import GRACE, Limits, groups, run_notebook
from autograder.sandbox import child as _run_child
from autograder.sandbox import run as sandbox

NAMESPACES = sandbox._namespace_problem() is None
ROOT = Path(__file__).resolve().parents[1]
SECRET = "CNNKIT_TEST_GRADER_SECRET"
STUDENT_UID, OTHER_UID = 200_001, 200_002  # like the batch grader's 200000 + slot
needs_namespaces = pytest.mark.skipif(
    not NAMESPACES, reason=f"uid and hide need namespaces: {sandbox._namespace_problem()}"
)


@pytest.fixture(
    params=[
        None,
        pytest.param(STUDENT_UID, marks=needs_namespaces),
    ],
    ids=["new-interpreter", "forking-server"],
)
def uid(request) -> int | None:
    """Both ways a run starts: without a uid, a new interpreter in namespaces; with one, a
    fork of this thread's server (autograder/sandbox/forkserver.py)."""
    return request.param


def make_notebook(tmp_path: Path, *sources: str) -> tuple[Path, Path]:
    """A notebook of code cells in a fresh workdir under tmp_path; (notebook, workdir)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    path = workdir / "submission.ipynb"
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path, workdir


@pytest.fixture
def open_folder():
    """A fresh folder every uid may search. tmp_path lies under a 0700 folder of root's, so
    what a test puts there would be out of the student's reach whatever the sandbox did."""
    folder = Path(tempfile.mkdtemp(prefix="cnnkit-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.outputs
        if out.get("name") == "stdout"
    )


def survivors(root: Path) -> list[int]:
    """Pids of processes whose working folder lies under root."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)).is_relative_to(root):
                found.append(int(cwd.parent.name))
        except OSError:
            continue
    return found


def test_a_notebook_runs_in_workdir_with_a_minimal_environment(tmp_path, monkeypatch, uid):
    monkeypatch.setenv(SECRET, "hunter2")
    outside = tmp_path / "outside.txt"
    probe = f"""
import glob, json, os
def can_write(path, size):
    try:
        with open(path, "wb") as f:
            f.write(b"0" * size)
        return "yes"
    except OSError as exc:
        return exc.strerror
environ_files = []
for name in glob.glob("/proc/[0-9]*/environ"):
    try:
        environ_files.append(open(name, "rb").read())
    except OSError:
        pass
print(json.dumps({{
    "cwd": os.getcwd(),
    "student": os.environ.get("CNNKIT_STUDENT_ID"),
    "secret_in_env": "{SECRET}" in os.environ,
    "secret_in_proc": any(b"{SECRET}" in data for data in environ_files),
    "numba_cache": os.environ["NUMBA_CACHE_DIR"],
    "outside": can_write({str(outside)!r}, 1),
    "too_big": can_write("big.bin", 3 * 2**20),
}}))"""
    path, workdir = make_notebook(tmp_path, "6 * 7", probe)
    result = run_notebook(
        path,
        workdir,
        Limits(timeout=60, max_output_mb=2),
        env={"CNNKIT_STUDENT_ID": "s042"},
        uid=uid,
    )
    assert (result.status, result.reason) == ("ok", "")
    assert result.notebook.cells[0].outputs[0].data["text/plain"] == "42"
    seen = json.loads(stdout(result.notebook))
    assert seen["cwd"] == str(workdir)
    assert seen["student"] == "s042"
    assert not seen["secret_in_env"]
    assert Path(seen["numba_cache"]).is_relative_to(workdir)
    assert seen["too_big"] == "File too large"  # RLIMIT_FSIZE at max_output_mb
    if NAMESPACES:  # the grader's /proc/<pid>/environ is out of sight; / is read-only
        assert not seen["secret_in_proc"]
        assert seen["outside"] == "Read-only file system" and not outside.exists()
    assert 0 < result.seconds < 60
    assert survivors(workdir) == []


def test_a_numba_loop_that_ignores_interrupts_is_killed_with_everything_it_started(tmp_path, uid):
    compile_ = """
import subprocess, numba
subprocess.Popen(["sleep", "600"], start_new_session=True)  # escapes the process group

@numba.njit
def spin(n):
    while n >= 0:
        n = (n * 3 + 1) % 1000003
    return n

spin.compile("(int64,)")
print("compiled")"""
    path, workdir = make_notebook(tmp_path, compile_, "spin(1)")
    started = time.monotonic()
    result = run_notebook(path, workdir, Limits(timeout=6), uid=uid)
    assert time.monotonic() - started < 6 + 3
    assert result.status == "timeout" and result.cell == 1 and not result.completed
    assert "cell 2" in result.reason and "6 s" in result.reason
    assert stdout(result.notebook) == "compiled\n"  # the partial notebook comes back
    assert survivors(workdir) == []


def test_a_plain_infinite_loop_times_out(tmp_path, uid):
    path, workdir = make_notebook(tmp_path, "while True: pass")
    result = run_notebook(path, workdir, Limits(timeout=3), uid=uid)
    assert result.status == "timeout" and "cell 1" in result.reason and result.cell == 0
    assert result.seconds < 3 + 3
    assert survivors(workdir) == []


def test_a_cell_past_the_cell_limit_names_its_cell(tmp_path, uid):
    path, workdir = make_notebook(tmp_path, "x = 1", "import time\ntime.sleep(60)", "x = 2")
    result = run_notebook(path, workdir, Limits(timeout=60, cell_timeout=2), uid=uid)
    assert (result.status, result.cell, result.completed) == ("timeout", 1, False)
    assert "cell 2 ran past the 2 s cell limit" in result.reason
    assert result.seconds < 2 + 5


def test_the_parent_kills_the_tree_when_the_runner_is_frozen(tmp_path, uid):
    # A stopped runner cannot enforce the timeout; the parent's hard kill must.
    stop_runner = "import os, signal; os.kill(os.getppid(), signal.SIGSTOP)"
    path, workdir = make_notebook(tmp_path, stop_runner)
    result = run_notebook(path, workdir, Limits(timeout=3), uid=uid)
    assert result.status == "timeout" and "process tree was killed" in result.reason
    assert result.notebook is None
    assert 3 + GRACE <= result.seconds < 3 + GRACE + 3
    assert survivors(workdir) == []


def test_exhausting_memory_is_status_memory_naming_the_cell_and_the_rest_runs(tmp_path, uid):
    path, workdir = make_notebook(
        tmp_path, "import numpy as np\na = np.ones(2**29)  # 4 GB", "print('after')"
    )
    result = run_notebook(path, workdir, Limits(timeout=60, memory_mb=1024), uid=uid)
    assert result.status == "memory" and result.cell == 0 and result.completed
    assert "MemoryError" in result.reason and "1024 MB" in result.reason
    assert stdout(result.notebook) == "after\n"


@pytest.mark.parametrize(
    "attack",
    [
        "import os, signal; os.kill(os.getppid(), signal.SIGKILL)",
        "import os; os._exit(3)",
        "import os, signal; os.killpg(0, signal.SIGKILL)",
    ],
    ids=["kill-parent", "exit", "kill-group"],
)
def test_a_notebook_that_kills_its_process_or_parent_has_crashed(tmp_path, attack, uid):
    path, workdir = make_notebook(tmp_path, "x = 1", attack, "print('never')")
    result = run_notebook(path, workdir, Limits(timeout=60), uid=uid)
    assert result.status == "crashed" and result.reason
    assert result.cell == 1 and not result.completed  # known even when the runner died
    assert result.notebook is None or "never" not in stdout(result.notebook)
    assert survivors(workdir) == []  # and this test process is still here to say so


def test_printing_hundreds_of_megabytes_is_cut_to_the_head_and_tail(tmp_path, uid):
    flood = "for i in range(400):\n    print(f'line {i} ' + 'x' * 2**19)"
    path, workdir = make_notebook(tmp_path, flood, "print('after')")
    result = run_notebook(path, workdir, Limits(timeout=60, max_output_mb=20), uid=uid)
    assert result.status == "ok" and result.completed
    assert set(result.truncated) == {0} and result.truncated[0] > 150 * 2**20
    assert len(nbformat.writes(result.notebook)) < 2.1 * 2**20  # a tenth of the cap per cell
    text = stdout(result.notebook)
    assert text.startswith("line 0 ") and "line 399 " in text  # the head and the tail
    assert "MB of this cell's output was cut here" in text and text.endswith("after\n")


def test_output_of_many_cells_stays_within_the_notebook_cap(tmp_path, uid):
    cell = "print('y' * 2**20 * 3)"
    path, workdir = make_notebook(tmp_path, *[cell] * 12, "print('last')")
    result = run_notebook(path, workdir, Limits(timeout=60, max_output_mb=10), uid=uid)
    assert result.status == "ok" and result.completed
    assert len(nbformat.writes(result.notebook)) < 10.5 * 2**20
    assert "KB of this cell's output was cut" in stdout(result.notebook)  # "last": no room
    assert len(result.truncated) >= 12 - 10


def test_an_error_past_the_output_cap_is_still_recorded(tmp_path, uid):
    path, workdir = make_notebook(tmp_path, "print('z' * 3 * 2**20)\nraise ValueError('v' * 10**6)")
    result = run_notebook(path, workdir, Limits(timeout=60, max_output_mb=1), uid=uid)
    (error,) = [o for o in result.notebook.cells[0].outputs if o.output_type == "error"]
    assert error.ename == "ValueError" and 0 < len(error.evalue) <= 2000


def test_parallel_numba_code_still_runs_in_the_output_checks_forks(tmp_path, uid):
    define = """import numba, numpy as np

@numba.njit(parallel=True)
def total(a):
    s = 0.0
    for i in numba.prange(a.shape[0]):
        s += a[i]
    return s

total(np.ones(100))"""
    check = """from autograder.outputs import Budget, run_isolated
print(run_isolated([lambda: {"v": total(np.ones(1000))}] * 2, Budget(30)))"""
    path, workdir = make_notebook(tmp_path, define, check)
    result = run_notebook(path, workdir, Limits(timeout=120), uid=uid)
    assert result.status == "ok", result.reason
    assert stdout(result.notebook) == "[{'v': 1000.0}, {'v': 1000.0}]\n"


def test_the_student_has_no_network(tmp_path, uid):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"""
import socket
for address in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(address, timeout=2)
        print("connected")
    except OSError as exc:
        print(type(exc).__name__)"""
        path, workdir = make_notebook(tmp_path, code)
        result = run_notebook(path, workdir, Limits(timeout=60), uid=uid)
        if not NAMESPACES:
            assert result.isolation["network"].startswith("unavailable")
            pytest.skip(f"no network namespace here: {result.isolation['network']}")
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the grader's side
    assert result.status == "ok"
    assert result.isolation["network"] == "unshare --net (loopback only)"
    assert "connected" not in stdout(result.notebook)
    assert stdout(result.notebook).count("Error") == 2


def test_without_namespaces_the_tree_is_still_killed_and_isolation_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "_namespace_problem", lambda: "disabled by the test")
    spawn = "import subprocess; subprocess.Popen(['sleep', '600'], start_new_session=True)"
    path, workdir = make_notebook(tmp_path, spawn, "while True: pass")
    (tmp_path / "grades.csv").write_text("s042,100")
    hide = [tmp_path / "grades.csv"]
    # 5 s: kernel start-up alone takes 2-3 s on a loaded 2-core machine, and cell 2 must run
    result = run_notebook(path, workdir, Limits(timeout=5), hide=hide, uid=STUDENT_UID)
    assert result.status == "timeout" and "cell 2" in result.reason
    assert result.isolation["network"] == "unavailable: disabled by the test"
    assert "no pid namespace" in result.isolation["processes"]
    # uid and hide cannot be enforced: the run goes ahead and says so; nothing is chowned
    assert result.isolation["user"] == (
        f"unenforced: uid {os.geteuid()}, the grader's own, not {STUDENT_UID} (disabled by the test)"
    )
    assert result.isolation["hidden"] == "unenforced: 1 path not hidden (disabled by the test)"
    assert workdir.stat().st_uid == os.geteuid()
    assert survivors(workdir) == []


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"this is not json", "NotJSONError"),
        (b'{"nbformat": 99, "nbformat_minor": 0, "cells": []}', "version"),
        (b'{"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code"}]}', "Valid"),
        (None, "cannot read"),
    ],
    ids=["not-json", "wrong-version", "schema", "missing"],
)
def test_a_malformed_notebook_is_invalid_before_anything_runs(tmp_path, content, expected):
    workdir = tmp_path / "work"
    workdir.mkdir()
    path = workdir / "submission.ipynb"
    if content is not None:
        path.write_bytes(content)
    result = run_notebook(path, workdir)
    assert result.status == "invalid" and expected in result.reason
    assert result.notebook is None and result.seconds < 2
    assert not (workdir / ".home").exists()  # nothing was started


READ_PROBE = """
import json, os
def read(path):
    try:
        return open(path).read()
    except OSError as exc:
        return exc.strerror
def listing(path):
    try:
        return os.listdir(path)
    except OSError as exc:
        return exc.strerror
with open("written.txt", "w") as f:
    f.write("by the student")
print(json.dumps({{
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()],
    "files": {{name: read(path) for name, path in {files!r}.items()}},
    "folders": {{name: listing(path) for name, path in {folders!r}.items()}},
}}))"""


@needs_namespaces
def test_as_a_uid_the_student_reads_neither_hidden_paths_nor_other_workdirs(open_folder):
    solutions, gradebook, public = (
        open_folder / "solutions",
        open_folder / "grades.csv",
        open_folder / "public.txt",
    )
    solutions.mkdir()
    (solutions / "answer.py").write_text("ANSWER = 42")
    gradebook.write_text("s042,100")
    public.write_text("course notes")  # world-readable and not hidden: the control
    other = open_folder / "other-student"
    other.mkdir()
    (other / "submission.ipynb").write_text("their work")
    os.chown(other, OTHER_UID, OTHER_UID)
    other.chmod(0o700)
    files = {
        "answer": str(solutions / "answer.py"),
        "gradebook": str(gradebook),
        "public": str(public),
        "other": str(other / "submission.ipynb"),
    }
    folders = {"solutions": str(solutions), "other": str(other)}
    path, workdir = make_notebook(open_folder, READ_PROBE.format(files=files, folders=folders))
    hide = [solutions, gradebook, open_folder / "no-such-file"]
    result = run_notebook(path, workdir, Limits(timeout=60), hide=hide, uid=STUDENT_UID)
    assert (result.status, result.reason) == ("ok", "")
    seen = json.loads(stdout(result.notebook))
    assert seen["ids"] == [STUDENT_UID, STUDENT_UID, STUDENT_UID, []]
    assert seen["files"] == {
        "answer": "No such file or directory",  # the folder is an empty tmpfs
        "gradebook": "",  # /dev/null
        "public": "course notes",
        "other": "Permission denied",
    }
    assert seen["folders"] == {"solutions": [], "other": "Permission denied"}
    assert result.isolation["user"] == f"uid {STUDENT_UID}, no groups"
    assert result.isolation["hidden"] == "2 paths hidden"  # the missing one is skipped
    info = workdir.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (STUDENT_UID,) * 2 + (0o700,)
    assert (workdir / ".home" / "tmp").stat().st_uid == STUDENT_UID
    # what the student wrote stayed in the run's tmpfs: the caller's copy is as it was
    assert not (workdir / "written.txt").exists()
    assert solutions.joinpath("answer.py").read_text() == "ANSWER = 42"  # hidden, not harmed
    shutil.rmtree(workdir)  # and deletes
    assert not workdir.exists()
    assert survivors(workdir) == []


@needs_namespaces
def test_as_a_uid_a_notebook_runs_in_a_workdir_under_a_folder_it_cannot_search(tmp_path):
    # tmp_path lies under root's 0700 folder, like the interpreter under /root here: the
    # sandbox binds what the run needs into a tmpfs over it. A hidden file inside the workdir
    # stays hidden through that bind.
    plot = """
import os
import matplotlib.pyplot as plt
import numpy as np
plt.plot(np.arange(3))
plt.savefig("plot.png")
print(os.getuid(), os.stat("plot.png").st_uid, repr(open("key.txt").read()), sorted(os.listdir("..")))"""
    path, workdir = make_notebook(tmp_path, plot)
    (workdir / "key.txt").write_text("the answer key")
    (tmp_path / "neighbour.txt").write_text("not needed by the run")
    result = run_notebook(
        path, workdir, Limits(timeout=60), hide=[workdir / "key.txt"], uid=STUDENT_UID
    )
    assert (result.status, result.reason) == ("ok", "")
    assert stdout(result.notebook) == f"{STUDENT_UID} {STUDENT_UID} '' ['work']\n"
    assert (workdir / "key.txt").read_text() == "the answer key"
    assert result.isolation["hidden"] == "1 path hidden"


CAPABILITY_PROBE = """
import gc, json, os, sys, tempfile
import numba, numpy
import helper
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
try:
    os.setuid(0)
    setuid = "became root"
except PermissionError:
    setuid = "refused"
print(json.dumps({
    "caps": [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
    "no_new_privs": status["NoNewPrivs"].strip(),
    "setuid": setuid,
    "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "argv0": os.path.basename(sys.argv[0]),
    "helper": helper.VALUE,
    "numba_cache": numba.config.CACHE_DIR,
    "tmp": tempfile.gettempdir(),
    "home": os.path.expanduser("~"),
    "random": numpy.random.rand(),
    "notebooks_in_memory": sum(isinstance(o, dict) and "cells" in o for o in gc.get_objects()),
}))"""


@needs_namespaces
def test_a_forked_run_holds_no_capability_and_sees_only_its_own_run(tmp_path):
    path, workdir = make_notebook(tmp_path, CAPABILITY_PROBE)
    (workdir / "helper.py").write_text("VALUE = 7")  # the student's own module
    result = run_notebook(path, workdir, Limits(timeout=60), uid=STUDENT_UID)
    assert (result.status, result.reason) == ("ok", "")
    seen = json.loads(stdout(result.notebook))
    assert seen["caps"] == ["0000000000000000"] * 5
    assert (seen["no_new_privs"], seen["setuid"]) == ("1", "refused")
    assert seen["processes"] == [1, 2, 3]  # init, runner, kernel: no server, no grader
    # the kernel looks started by `python -m ipykernel_launcher`, with the run's settings,
    # not the server's (which imported numba and tempfile)
    assert (seen["argv0"], seen["helper"]) == ("ipykernel_launcher.py", 7)
    home = workdir / ".home"
    assert seen["home"] == str(home)
    assert Path(seen["numba_cache"]).is_relative_to(home)
    assert Path(seen["tmp"]).is_relative_to(home)
    # the kernel was forked before the runner read the notebook: its cells, hidden tests
    # included, reach the kernel one at a time
    assert seen["notebooks_in_memory"] == 0
    # numpy's generator was seeded where the server imported it: each run draws afresh
    again = run_notebook(path, workdir, Limits(timeout=60), uid=STUDENT_UID)
    assert json.loads(stdout(again.notebook))["random"] != seen["random"]


@needs_namespaces
def test_a_run_has_its_own_shared_memory_and_ipc(tmp_path, uid):
    host_marker = Path("/dev/shm") / f"cnnkit-test-host-{os.getpid()}"
    left = f"cnnkit-test-left-{os.getpid()}"
    host_marker.write_text("the machine's")
    probe = f"""
import os
from multiprocessing import shared_memory
block = shared_memory.SharedMemory(name={left!r}, create=True, size=1024)
print(sorted(os.listdir("/dev/shm")), os.readlink("/proc/self/ns/ipc"))"""
    try:
        path, workdir = make_notebook(tmp_path, probe)
        result = run_notebook(path, workdir, Limits(timeout=60), uid=uid)
        assert (result.status, result.reason) == ("ok", "")
        listing, ipc = stdout(result.notebook).rsplit(" ", 1)
        assert listing == f"['{left}']"  # the machine's marker is out of sight
        assert ipc.strip() != os.readlink("/proc/self/ns/ipc")
        assert not (Path("/dev/shm") / left).exists()  # and what it left went with it
        assert result.isolation["ipc"].startswith("own System V IPC")
    finally:
        host_marker.unlink()


@needs_namespaces
def test_a_fork_bomb_stops_at_the_uid_s_process_limit(tmp_path):
    bomb = """
import subprocess
started = []
try:
    for _ in range(400):
        started.append(subprocess.Popen(["sleep", "600"]))
except OSError as exc:
    print(len(started) < 256, type(exc).__name__)"""
    path, workdir = make_notebook(tmp_path, bomb)
    result = run_notebook(path, workdir, Limits(timeout=60), uid=STUDENT_UID)
    assert (result.status, result.reason) == ("ok", "")
    assert stdout(result.notebook) == "True BlockingIOError\n"
    assert result.isolation["processes"].endswith("RLIMIT_NPROC 256 for the uid")
    assert survivors(workdir) == []


def server_of(pid: int) -> int:
    """The pid of the sandbox server that process `pid` started."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            stat_line = (cmdline.parent / "stat").read_text()
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                if sandbox.SERVER.name in cmdline.read_text():
                    return int(cmdline.parent.name)
    raise LookupError(f"no server below {pid}")


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@needs_namespaces
def test_a_killed_grader_takes_its_server_and_the_running_notebook_along(tmp_path):
    path, workdir = make_notebook(tmp_path, "import time\ntime.sleep(600)")
    grade = (
        "from autograder.sandbox import Limits, run_notebook\n"
        f"run_notebook({str(path)!r}, {str(workdir)!r}, Limits(timeout=600), uid={STUDENT_UID})"
    )
    grader = subprocess.Popen([sys.executable, "-c", grade])
    try:
        assert wait_until(lambda: survivors(workdir), 60), "the notebook never started"
        server = server_of(grader.pid)
    finally:
        grader.kill()
        grader.wait()
    assert wait_until(lambda: not survivors(workdir), 10), "the notebook outlived its grader"
    assert wait_until(lambda: not _run_child.is_alive(server), 10)


@needs_namespaces
def test_a_run_whose_server_dies_has_crashed_and_the_next_run_has_a_new_server(tmp_path):
    server = sandbox._server()
    path, workdir = make_notebook(tmp_path, "import time\ntime.sleep(600)")

    def kill_server():
        if wait_until(lambda: survivors(workdir), 60):
            server.process.kill()

    killer = threading.Thread(target=kill_server)
    killer.start()
    result = run_notebook(path, workdir, Limits(timeout=120), uid=STUDENT_UID)
    killer.join()
    assert result.status == "crashed" and "SIGKILL" in result.reason
    assert result.seconds < 60
    assert survivors(workdir) == []
    (tmp_path / "again").mkdir()
    path, workdir = make_notebook(tmp_path / "again", "print(6 * 7)")
    again = run_notebook(path, workdir, Limits(timeout=60), uid=STUDENT_UID)
    assert (again.status, stdout(again.notebook)) == ("ok", "42\n")
    assert sandbox._server() is not server


@needs_namespaces
def test_a_server_that_cannot_start_says_why(tmp_path, monkeypatch):
    broken = tmp_path / "server.py"
    broken.write_text("raise ImportError('no module named kernel_for_the_test')")
    monkeypatch.setattr(sandbox, "SERVER", broken)
    path, workdir = make_notebook(tmp_path, "print(1)")
    with ThreadPoolExecutor(1) as thread:  # a thread of its own starts a server of its own
        run = thread.submit(run_notebook, path, workdir, Limits(timeout=60), uid=STUDENT_UID)
        with pytest.raises(RuntimeError, match="server ended .exit status 1.; ImportError: no"):
            run.result()


@pytest.mark.parametrize("level", [0, 1], ids=["workdir", "its-parent"])
def test_a_hide_path_containing_the_workdir_is_refused_before_anything_runs(tmp_path, level):
    path, workdir = make_notebook(tmp_path, "print('never')")
    hidden = [workdir, *workdir.parents][level]
    with pytest.raises(ValueError) as caught:
        run_notebook(path, workdir, hide=[hidden], uid=STUDENT_UID)
    assert f"hide path {hidden} contains the workdir {workdir}" in str(caught.value)
    assert not (workdir / ".home").exists()
    assert workdir.stat().st_uid == os.geteuid()  # not handed over either


@pytest.mark.parametrize("uid", [0, -1, 2**32 - 1, True, "200001"])
def test_a_uid_that_is_not_an_unprivileged_int_is_refused(tmp_path, uid):
    path, workdir = make_notebook(tmp_path, "print('never')")
    with pytest.raises(ValueError, match="uid must be an int"):
        run_notebook(path, workdir, uid=uid)
    assert not (workdir / ".home").exists()


# --------------------------------------------------------------------------- one budget per run

GROUPS = groups.create(64, 16)
if GROUPS[0] is not None:
    GROUPS[0].remove()
needs_groups = pytest.mark.skipif(GROUPS[0] is None, reason=GROUPS[1] or "control groups")


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise LookupError("MemAvailable")


def _lowest_while(run, measure) -> tuple[object, float]:
    """(run()'s result, the lowest value `measure()` gave while it ran, every 20 ms)."""
    low, done = [measure()], threading.Event()

    def watch():
        while not done.is_set():
            low.append(measure())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run()
    finally:
        done.set()
        watcher.join()
    return result, min(low)


@needs_groups
def test_processes_of_one_run_share_its_memory_budget(tmp_path, uid):
    """8 processes touching 1.2 GB each, under a 2000 MB budget: the run ends as `memory`
    naming the cell, and the machine never lends it more than the budget (plus a margin for
    the page cache and the grader's own moves)."""
    pool = """
import multiprocessing as mp
import numpy as np
def touch(i):
    return float(np.ones(int(1.2 * 2**30) // 8).sum())
with mp.Pool(8) as pool:
    print(pool.map(touch, range(8)))"""
    path, workdir = make_notebook(tmp_path, "x = 1", pool, "print('after')")
    limits = Limits(timeout=90, cell_timeout=40, memory_mb=2000)
    before = _available_mb()
    result, lowest = _lowest_while(
        lambda: run_notebook(path, workdir, limits, uid=uid), _available_mb
    )
    assert result.status == "memory" and result.cell == 1
    assert "2000 MB memory budget" in result.reason and "out-of-memory killer" in result.reason
    assert before - lowest < 2000 + 600
    assert result.isolation["group"].startswith("cgroup v")
    assert groups.of_grader(os.getpid()) == [] and survivors(workdir) == []


@needs_groups
@needs_namespaces
def test_a_fork_loop_stops_at_the_run_s_process_limit_and_leaves_nothing(tmp_path):
    loop = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
        n += 1
except OSError as exc:
    print(n < 64, type(exc).__name__)"""
    path, workdir = make_notebook(tmp_path, loop)
    result = run_notebook(path, workdir, Limits(timeout=60, max_processes=64), uid=STUDENT_UID)
    assert (result.status, stdout(result.notebook)) == ("ok", "True BlockingIOError\n")
    assert "64 processes for the whole run" in result.isolation["group"]
    assert survivors(workdir) == [] and groups.of_grader(os.getpid()) == []
    # the next run is graded as usual
    (tmp_path / "next").mkdir()
    path, workdir = make_notebook(tmp_path / "next", "print(6 * 7)")
    assert stdout(run_notebook(path, workdir, Limits(timeout=60), uid=STUDENT_UID).notebook) == (
        "42\n"
    )


@needs_namespaces
def test_a_writer_stops_at_the_disk_budget_and_the_machine_s_disk_is_spared(tmp_path, uid):
    """30 MB files in a loop into its folder, its home and /tmp, 3 GB in all: the writes fail
    at the 200 MB budget (ENOSPC; /tmp is read-only) and the run goes on to its end."""
    writer = """
import errno, os
written, stopped = 0, {}
chunk = b"x" * (30 * 2**20)
for target in (".", os.environ["HOME"], "/tmp"):
    try:
        for i in range(34):
            with open(os.path.join(target, f"big{i}.bin"), "wb") as f:
                f.write(chunk)
            written += 30
    except OSError as exc:
        stopped[target == "/tmp" and "tmp" or "work"] = errno.errorcode[exc.errno]
print(written <= 200, sorted(set(stopped.values())))"""
    path, workdir = make_notebook(tmp_path, writer, "print('after')")

    def free_mb() -> float:
        stat_ = os.statvfs(workdir)
        return stat_.f_bavail * stat_.f_frsize / 2**20

    before = free_mb()
    limits = Limits(timeout=60, disk_mb=200, max_output_mb=50)
    result, lowest = _lowest_while(lambda: run_notebook(path, workdir, limits, uid=uid), free_mb)
    assert result.status == "ok" and result.completed
    assert stdout(result.notebook) == "True ['ENOSPC', 'EROFS']\nafter\n"
    assert before - lowest < 200 + 100
    assert not list(workdir.glob("big*.bin"))  # the copy outside was left as it was
    assert "200 MB tmpfs" in result.isolation["filesystem"]


def test_without_a_group_the_per_process_limits_still_hold(tmp_path, uid):
    path, workdir = make_notebook(
        tmp_path, "import numpy as np\na = np.ones(2**29)  # 4 GB", "print('after')"
    )
    limits = Limits(timeout=60, memory_mb=1024, groups=False)
    result = run_notebook(path, workdir, limits, uid=uid)
    assert result.status == "memory" and "MemoryError" in result.reason
    assert result.isolation["group"].startswith("none: control groups turned off")
    assert result.isolation["memory"] == "RLIMIT_AS 1024 MB per process"


@needs_groups
@needs_namespaces
def test_the_group_of_a_sigkilled_grader_is_swept_by_the_next(tmp_path):
    """A grader killed mid-run cannot remove its group: the run dies with the grader (its
    server does), and the next grader to make a group removes the one left."""
    path, workdir = make_notebook(tmp_path, "while True: pass")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from autograder.sandbox import Limits, run_notebook\n"
        f"run_notebook(Path({str(path)!r}), Path({str(workdir)!r}), Limits(timeout=120), "
        f"uid={OTHER_UID})\n"
    )
    grader = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)

    def left() -> list[Path]:
        return groups.of_grader(grader.pid)

    try:
        assert wait_until(lambda: left() and survivors(workdir), 60)
    finally:
        grader.kill()
        grader.wait()
    folders = left()
    assert folders and wait_until(lambda: survivors(workdir) == [], 10)
    for folder in folders:
        assert folder.parent.name == groups.FOLDER
        assert folder in groups.sweep(folder.parent)
    assert left() == []


def test_groups_fall_back_from_v2_to_v1_and_say_why_when_neither_can_be_made(monkeypatch):
    def refused(memory_mb, max_processes):
        raise PermissionError(13, "Permission denied", "/sys/fs/cgroup/x/cgroup.subtree_control")

    made = []
    monkeypatch.setattr(groups, "_create_v2", refused)
    monkeypatch.setattr(groups, "_create_v1", lambda m, p: made.append((m, p)) or None)
    group, why = groups.create(100, 10)
    assert group is None and made == [(100, 10)]
    assert why == (
        "control groups unavailable: Permission denied (/sys/fs/cgroup/x/cgroup.subtree_control)"
    )
    monkeypatch.setattr(groups, "_create_v1", refused)
    group, why = groups.create(100, 10)
    assert group is None and why.count("Permission denied") == 2
    assert "cgroup.subtree_control" in why
