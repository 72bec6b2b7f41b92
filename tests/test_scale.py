"""Grading at scale: a Dask cluster gives the same files as local workers, a killed worker or an
interrupted grader loses and duplicates nothing, and a busy course or a full disk is refused."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autograder import grade as grading
from autograder.release import release
from autograder.sandbox import Limits
from autograder.synthetic import make_class

distributed = pytest.importorskip("dask.distributed")

A1 = "a1_convolution"
LIMITS = Limits(timeout=25)  # what `cnnkit grade --timeout 25` gives
CLASS = ["full-marks", "half-done", "unfilled", "uses-torch", "corrupt-notebook", "edits-tests"]
REPORTS = ("grades.csv", "gradescope")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(course, submissions, files of an uninterrupted local run of CLASS)."""
    root = tmp_path_factory.mktemp("scale")
    course = root / "course"
    released = release(A1, course, prove_pair=False)
    subs = make_class(course / "source" / A1, released, A1, root / "submissions", CLASS)
    batch = grading.grade(A1, subs, course, out=root / "local", limits=LIMITS, progress=False)
    return course, subs, files(batch.out)


def files(out: Path) -> dict[str, bytes]:
    """The reports under `out` by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] in REPORTS
    }


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c


def grade_on(cluster, course_dir: Path, subs: Path, out: Path) -> grading.Batch:
    return grading.grade(
        A1,
        subs,
        course_dir,
        out=out,
        limits=LIMITS,
        progress=False,
        scheduler=cluster.scheduler_address,
    )


def test_a_dask_cluster_grades_the_class_into_the_same_files(course, cluster, tmp_path):
    course_dir, subs, local = course
    out = tmp_path / "dask"
    batch = grade_on(cluster, course_dir, subs, out)
    assert sorted(batch.graded_now) == sorted(CLASS)
    assert files(out) == local


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(course, cluster, tmp_path):
    course_dir, subs, local = course
    out = tmp_path / "killed"
    killed = threading.Event()

    def kill_a_busy_worker():
        with distributed.Client(cluster.scheduler_address) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed.is_set():
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.set()
                time.sleep(0.5)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    batch = grade_on(cluster, course_dir, subs, out)
    killer.join()
    assert killed.is_set()
    assert sorted(o.student_id for o in batch.outcomes) == sorted(CLASS)  # one row each
    assert files(out) == local


def test_an_interrupted_grader_resumes_and_ends_with_the_same_files(course, tmp_path):
    course_dir, subs, local = course
    out = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "autograder.cli",
        "grade",
        A1,
        str(subs),
        "--course",
        str(course_dir),
        "--out",
        str(out),
        "--timeout",
        "25",
        "--workers",
        "1",
        "--quiet",
    ]
    proc = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((out / "results").glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in (out / "results").glob("*.json")}
    assert 2 <= len(done_before) < len(CLASS)
    batch = grading.grade(A1, subs, course_dir, out=out, limits=LIMITS, progress=False)
    assert set(batch.graded_now) == set(CLASS) - done_before
    assert files(out) == local


def test_a_second_grader_on_the_same_course_is_refused(course, tmp_path):
    course_dir, subs, _ = course
    with open(course_dir / grading.LOCK, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)  # as a holder does
        held.write("pid 12345\n")
        held.flush()
        with pytest.raises(grading.GradeError, match="another cnnkit grade is running.*pid 12345"):
            grading.grade(A1, subs, course_dir, out=tmp_path / "second", progress=False)


def test_a_full_disk_is_reported_before_grading(course, tmp_path, monkeypatch):
    course_dir, subs, _ = course
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10 * 2**20))
    with pytest.raises(grading.GradeError, match="only 10 MB free"):
        grading.grade(A1, subs, course_dir, out=tmp_path / "full", progress=False)
    assert not (tmp_path / "full" / "results").exists()


def test_an_unreachable_scheduler_is_a_clear_error(course, tmp_path):
    course_dir, subs, _ = course
    with pytest.raises(grading.GradeError, match="cannot reach the Dask scheduler"):
        grading.grade(
            A1,
            subs,
            course_dir,
            out=tmp_path / "nowhere",
            progress=False,
            scheduler="tcp://127.0.0.1:9",
        )
