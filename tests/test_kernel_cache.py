"""autograder.kernel_cache: the grader's numba cache of the kit's kernels, made once, found again
by later graders, loaded once by the sandbox server for all its runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

import cnn_core
from autograder import kernel_cache as kc
from autograder.sandbox import Limits, run_notebook, start_server
from autograder.sandbox import run as sandbox

DAY = 86400


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """An empty cache folder for this test, and kernel_cache's memory of this process cleared."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kc._kernel_cache.cache_clear()
    yield tmp_path / "cache" / "cnnkit" / "numba"
    kc._kernel_cache.cache_clear()


@pytest.fixture
def fake_warm_up(monkeypatch):
    """kernel_cache's warm-up with its processes left out (the folder it makes stays empty):
    the calls it got."""
    calls = []
    real = kc._warm_up

    def warm_up(root: Path) -> Path | None:
        calls.append(root)
        return real(root)

    monkeypatch.setattr(kc, "_warm_up", warm_up)
    monkeypatch.setattr(kc, "_run", lambda env, command: True)
    return calls


def test_a_finished_cache_is_found_again_without_a_warm_up(cache_home, fake_warm_up):
    first = kc.kernel_cache()
    assert first is not None and first.parent == cache_home
    assert (first / kc.COMPLETE).is_file() and len(fake_warm_up) == 1
    kc._kernel_cache.cache_clear()  # as a later grader process would start
    assert kc.kernel_cache() == first
    assert len(fake_warm_up) == 1, "the finished folder was warmed up again"
    assert sorted(p.name for p in cache_home.iterdir()) == [".lock", first.name], "a leftover"


def test_a_changed_module_of_cnn_core_gets_a_folder_of_its_own(tmp_path, monkeypatch):
    """numba reloads a kernel only if its module's size and modification time are unchanged:
    the folder's name follows them."""
    copy = tmp_path / "cnn_core"
    shutil.copytree(Path(cnn_core.__file__).parent, copy, ignore=shutil.ignore_patterns("__py*"))
    monkeypatch.setattr(cnn_core, "__file__", str(copy / "__init__.py"))
    before = kc._key()
    assert kc._key() == before
    os.utime(copy / "_kernels.py", ns=(0, time.time_ns() + 10**9))
    assert kc._key() != before


def test_a_failed_warm_up_leaves_nothing_and_gives_no_cache(cache_home, monkeypatch):
    monkeypatch.setattr(kc, "WARM_UP", "raise SystemExit({} + 1)")
    assert kc.kernel_cache() is None
    assert [p.name for p in cache_home.iterdir()] == [".lock"]


def test_an_unfinished_folder_is_filled_again_and_a_failure_gives_no_cache(
    cache_home, fake_warm_up, monkeypatch
):
    """A folder without its marker (a warm-up that died, a prune cut short) is not taken for a
    finished one; anything that goes wrong leaves grading without a cache, never stopped."""
    cache_home.mkdir(parents=True)
    unfinished = cache_home / kc._key()
    unfinished.mkdir()
    (unfinished / "half-written.nbi").write_text("")
    assert kc.kernel_cache() == unfinished and len(fake_warm_up) == 1
    assert sorted(p.name for p in unfinished.iterdir()) == [kc.COMPLETE]

    kc._kernel_cache.cache_clear()

    def broken() -> str:
        raise RuntimeError("no CPU features")

    monkeypatch.setattr(kc, "_key", broken)
    assert kc.kernel_cache() is None


def test_folders_no_grader_used_for_a_week_are_pruned(cache_home, fake_warm_up):
    old, recent, flat = cache_home / "0ld", cache_home / "recent", cache_home / "cnn_core_0123"
    for left in (cache_home / ".new-crashed", cache_home / ".old-1-cut-short"):
        left.mkdir(parents=True)  # what a warm-up or removal cut short left: removed at once
    for folder in (old, recent, flat):
        folder.mkdir(parents=True)
        (folder / kc.COMPLETE).touch()
    (flat / kc.COMPLETE).unlink()  # an earlier version's layout: no marker
    week_ago = time.time() - kc.PRUNE_DAYS * DAY - 60
    os.utime(old / kc.COMPLETE, (week_ago, week_ago))
    os.utime(flat, (week_ago, week_ago))
    current = kc.kernel_cache()
    assert sorted(p.name for p in cache_home.iterdir()) == sorted([".lock", current.name, "recent"])


def test_the_warm_up_compiles_every_kernel_for_both_dtypes_and_its_groups_share_none():
    """Every kernel is in the grader's cache and loaded by its sandbox server, so that no
    submission compiles one (a kernel left out costs each submission that meets it a second);
    the groups, compiled by processes side by side, share no kernel, whose cache index two
    processes would then both write."""
    check = textwrap.dedent("""
        import json, sys
        from numba.core.registry import CPUDispatcher
        from cnn_core import _kernels
        from cnn_core._warm_up import compile_kernels
        compile_kernels(None if sys.argv[1] == "all" else int(sys.argv[1]))
        print(json.dumps({
            name: sorted({str(signature[0].dtype) for signature in kernel.signatures})
            for name, kernel in vars(_kernels).items()
            if isinstance(kernel, CPUDispatcher) and kernel.signatures
        }))
    """)

    def compiled(group: str) -> dict[str, list[str]]:
        run = subprocess.run(
            [sys.executable, "-c", check, group], capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    every = compiled("all")
    from numba.core.registry import CPUDispatcher

    from cnn_core import _kernels

    kernels = {n for n, k in vars(_kernels).items() if isinstance(k, CPUDispatcher)}
    public = {n for n in kernels if not n.startswith("_")}  # the others are inlined helpers
    assert set(every) == public
    assert all(kinds == ["float32", "float64"] for kinds in every.values()), every
    groups = [set(compiled(str(i))) for i in range(len(kc.GROUPS))]
    assert sum(map(len, groups)) == len(public), f"a kernel in two groups: {groups}"


PROBE = """
import json
import numpy as np
from numba.core.registry import CPUDispatcher
from cnn_core import _kernels
kernels = {
    n: k for n, k in vars(_kernels).items()
    if isinstance(k, CPUDispatcher) and not n.startswith("_")  # not the inlined helpers
}
ready = sorted(n for n, k in kernels.items() if k.signatures)
x = np.arange(-3, 3)  # int64: a signature no cache holds, compiled here
out = np.empty_like(x)
_kernels.relu_forward(x, out)
print(json.dumps({"kernels": sorted(kernels), "ready": ready, "relu": out.tolist()}))
"""


@pytest.mark.skipif(sandbox._namespace_problem() is not None, reason="needs the forking server")
def test_the_server_s_runs_find_every_kernel_loaded_and_never_write_its_cache():
    cache = kc.kernel_cache()
    assert cache is not None
    files = [p for p in cache.rglob("*") if p.is_file() and p.name != kc.COMPLETE]
    before = {p: p.stat().st_mtime_ns for p in files}
    folder = Path(tempfile.mkdtemp(prefix="cnnkit-test-"))
    try:
        folder.chmod(0o755)
        workdir = folder / "work"
        workdir.mkdir()
        path = folder / "probe.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)]), path)
        assert start_server(cache)
        run = run_notebook(path, workdir, Limits(timeout=120), uid=200_003)
    finally:
        start_server(None)  # this thread's later runs: a server without the kernels
        shutil.rmtree(folder, ignore_errors=True)
    assert run.status == "ok", run.reason
    seen = json.loads(run.notebook.cells[0].outputs[0].text)
    assert seen["ready"] == seen["kernels"] != [], "kernels compiled in the run"
    assert seen["relu"] == [0, 0, 0, 0, 1, 2]
    after = [p for p in cache.rglob("*") if p.is_file() and p.name != kc.COMPLETE]
    assert {p: p.stat().st_mtime_ns for p in after} == before
