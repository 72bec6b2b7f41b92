"""`cnnkit gradescope`: an autograder bundle that grades one assignment on Gradescope with the
same pipeline as `cnnkit grade`, and the program the bundle runs there.

Gradescope unpacks the bundle into /autograder/source, runs `setup.sh` once, as root, when it
builds the assignment's image, then `run_autograder` for every submission: the student's files are
in /autograder/submission, who they are in /autograder/submission_metadata.json, and the result is
read from /autograder/results/results.json. $CNNKIT_GRADESCOPE_ROOT moves /autograder, to try a
bundle on one's own machine.

The bundle holds:

    setup.sh, run_autograder
    cnnkit/       the kit's source at this version (pyproject.toml, cnn_core/, autograder/),
                  installed by setup.sh into a virtual environment with its dependencies (no torch)
    course/       an nbgrader course with the assignment's source (hidden tests included) and
                  release, and the course's secret (.cnnkit-secret, 0600), from which each
                  student's hidden cases are drawn as in the course's own grading
    config.json   the assignment, its notebooks, the visibility of the tests' details

`run_autograder` grades the notebook as `cnnkit grade` grades one student (static checks, the
sandboxed run with the hidden tests, output checks and curve checks judged outside the student's
process) and writes Gradescope's results: the score, one test per autograded cell with its points
and messages, and a first line saying what the sandbox could enforce in Gradescope's container.
The student is identified by the metadata's `sid` (the school's id, as in the course's roster),
else their e-mail address, else Gradescope's user id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nbformat

from autograder.collect import unsafe_id_problem
from autograder.release import KIT_ROOT
from autograder.secret import SECRET, course_secret

ROOT_ENV = "CNNKIT_GRADESCOPE_ROOT"
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
KIT_PARTS = ("pyproject.toml", "README.md", "cnn_core", "autograder")
VENV = "/opt/cnnkit"

SETUP_SH = f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
cd "${{{ROOT_ENV}:-/autograder}}/source"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip util-linux >/dev/null
# a virtual environment: Ubuntu's own Python refuses system-wide pip installs (PEP 668)
python3 -m venv {VENV}
{VENV}/bin/pip install --quiet --upgrade pip
{VENV}/bin/pip install --quiet ./cnnkit
{VENV}/bin/python -m autograder.gradescope prepare
"""

RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes results/results.json.
PYTHON={VENV}/bin/python
[ -x "$PYTHON" ] || PYTHON=python3   # trying the bundle outside Gradescope, with the kit installed
exec "$PYTHON" -m autograder.gradescope run
"""


class BundleError(RuntimeError):
    """A bundle cannot be made: a bad assignment, course or output file."""


# --------------------------------------------------------------------------- the bundle


def make_bundle(
    assignment: str,
    course: Path,
    out: Path,
    visibility: str = "after_published",
    timeout: float = 600.0,
    force: bool = False,
) -> Path:
    """Write the Gradescope bundle of `assignment`, taken from the nbgrader course `course`
    (its source placed there from the kit's solutions when missing), to the zip `out`; the path
    written. `visibility`: when students see the tests' details (one of VISIBILITIES);
    `timeout`: wall seconds the notebook may run. An existing `out` is kept unless `force`."""
    from autograder.grade import prepare
    from autograder.sandbox import Limits

    if visibility not in VISIBILITIES:
        raise BundleError(
            f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}"
        )
    out = Path(out)
    if out.exists() and not force:
        raise BundleError(f"{out} exists: pass --force to replace it")
    course = Path(course).resolve()
    setup = prepare(assignment, course, Limits())
    course_secret(course)
    config = {
        "assignment": assignment,
        "notebooks": setup.notebooks,
        "visibility": visibility,
        "timeout": timeout,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        _add_text(zf, "setup.sh", SETUP_SH, 0o755)
        _add_text(zf, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add_text(zf, "config.json", json.dumps(config, indent=1) + "\n", 0o644)
        for part in KIT_PARTS:
            _add_tree(zf, KIT_ROOT / part, f"cnnkit/{part}")
        _add_tree(zf, setup.source, f"course/source/{assignment}")
        _add_tree(zf, setup.released, f"course/release/{assignment}")
        _add_text(zf, f"course/{SECRET}", (course / SECRET).read_text(), 0o600)
    tmp.replace(out)
    return out


def _add_text(zf: zipfile.ZipFile, name: str, text: str, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, text)


def _add_tree(zf: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    """Every file under `folder` (or the file itself), but caches and executed leftovers."""
    paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
    for path in paths:
        rel = path.relative_to(folder) if path != folder else Path()
        if not path.is_file() or any(p in ("__pycache__", ".ipynb_checkpoints") for p in rel.parts):
            continue
        if path.suffix == ".pyc":
            continue
        zf.write(path, f"{prefix}/{rel.as_posix()}" if rel.parts else prefix)


# --------------------------------------------------------------------------- inside Gradescope


def root() -> Path:
    """Gradescope's /autograder, or where $CNNKIT_GRADESCOPE_ROOT puts it."""
    return Path(os.environ.get(ROOT_ENV) or "/autograder")


def prepare_course(top: Path) -> None:
    """Record the bundled assignment in the bundled course's gradebook, once (setup.sh)."""
    from autograder.grade import prepare
    from autograder.sandbox import Limits

    config = _config(top)
    course = _course(top)
    prepare(config["assignment"], course, Limits())
    print(f"{config['assignment']}: released and recorded in the bundled course {course}")


def run(top: Path) -> Path:
    """Grade the submission under `top` and write top/results/results.json; its path.
    Whatever goes wrong, the student gets a results.json saying so."""
    started = time.monotonic()
    out = top / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    config = _config(top)
    try:
        student = student_id(top / "submission_metadata.json")
        release = _course(top) / "release" / config["assignment"]
        problem = wrong_submission(top / "submission", config, release)
        if problem:
            print(f"{student}: refused: {problem}")
        results = _refused(problem) if problem else _graded(top, config, student)
    except Exception as exc:  # the student must hear something; the staff see the traceback
        import traceback

        traceback.print_exc()
        results = _refused(
            f"The autograder failed ({type(exc).__name__}: {exc}); this is not your code's "
            "fault: tell the course staff.",
        )
    results["execution_time"] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return out


def _course(top: Path) -> Path:
    """The nbgrader course the bundle holds, as unpacked under `top`."""
    return top / "source" / "course"


def _config(top: Path) -> dict:
    return json.loads((top / "source" / "config.json").read_text())


def student_id(metadata: Path) -> str:
    """The submitting student's id from Gradescope's submission metadata: the first user's
    `sid`, else e-mail address, else Gradescope id. ValueError when there is none usable."""
    data = json.loads(metadata.read_text())
    users = data.get("users") or []
    if not users:
        raise ValueError(f"{metadata.name} names no user")
    user = users[0]
    for key in ("sid", "email", "id"):
        value = str(user.get(key) or "").strip()
        if value and not unsafe_id_problem(value):
            return value
    raise ValueError(f"{metadata.name}: the first user has no usable sid, email or id")


def wrong_submission(folder: Path, config: dict, release: Path) -> str:
    """Why the files in `folder` are not a submission of the bundle's assignment, whose release
    is in `release` ("" when they may be): its notebook missing, or a notebook whose cells are
    another assignment's."""
    assignment = config["assignment"]
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    for name in config["notebooks"]:
        mine = [p for p in found if p.name == name]
        if not mine:
            others = ", ".join(p.name for p in found) or "no notebook"
            return (
                f"This autograder grades {assignment}: it needs {name}, and the submission has "
                f"{others}. Was it submitted to the right assignment on Gradescope?"
            )
        released = _grade_ids(nbformat.read(release / name, as_version=4))
        try:
            ids = _grade_ids(nbformat.read(mine[0], as_version=4))
        except Exception:  # noqa: BLE001 - an unreadable notebook is graded, and reported, as invalid
            continue
        if released and not ids & released:
            return (
                f"This autograder grades {assignment}, but {name} holds none of its cells: it "
                "looks like another assignment's notebook, or a notebook not made from the "
                "release. Download the release again and submit your work in it."
            )
    return ""


def _grade_ids(nb: nbformat.NotebookNode) -> set[str]:
    """The grade_ids of a notebook's answer and test cells (set-up cells share names)."""
    found = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") and (meta.get("solution") or meta.get("grade")):
            found.add(meta["grade_id"])
    return found


def _graded(top: Path, config: dict, student: str) -> dict:
    """Gradescope's results of grading the submission as `cnnkit grade` grades one student."""
    from autograder.grade import grade
    from autograder.sandbox import Limits

    assignment = config["assignment"]
    with _workspace(top, config, student) as (course, subs, out):
        batch = grade(
            assignment,
            subs,
            course,
            out=out,
            workers=1,
            limits=Limits(timeout=float(config.get("timeout", 600.0))),
            progress=False,
            similarity=False,
        )
        results = json.loads((out / "gradescope" / student / "results.json").read_text())
    isolation = batch.outcomes[0].isolation
    print(f"{student}: {batch.outcomes[0].score:g} points")
    for aspect, what in isolation.items():  # the staff's (stdout is hidden from students)
        print(f"  sandbox {aspect}: {what}")
    titles = batch.setup.titles
    for test in results["tests"]:
        test["visibility"] = config.get("visibility", "after_published")
        if test["name"] in titles:
            test["name"] = f"{titles[test['name']]} ({test['name']})"
    results["output"] = f"{held(isolation)}\n{results['output']}"
    return results


def held(isolation: dict[str, str]) -> str:
    """One line for the student on how the notebook was run: confined, or (in a container
    that allows no namespaces or control groups) with per-process limits only."""
    if not isolation:
        return "The notebook was not run."
    confined = not isolation.get("network", "").startswith("unavailable")
    grouped = isolation.get("group", "").startswith("cgroup")
    if confined and grouped:
        return "Run in the kit's sandbox: a user of its own, no network, one memory budget."
    if confined:
        return (
            "Run in the kit's sandbox: a user of its own, no network, memory limited per process."
        )
    return "Run with time and memory limits per process (this container allows no more)."


def _refused(why: str) -> dict:
    """Results that grade nothing: a score of zero, with `why` for the student."""
    return {"score": 0.0, "output": why, "visibility": "visible", "stdout_visibility": "hidden"}


@contextlib.contextmanager
def _workspace(top: Path, config: dict, student: str) -> Iterator[tuple[Path, Path, Path]]:
    """(course, submissions, out) in a temporary folder: a copy of the bundled course, and the
    submission's files laid out as nbgrader collects them. A notebook Gradescope kept in a
    sub-folder (an uploaded zip, a repository) is taken from there."""
    with tempfile.TemporaryDirectory(prefix="cnnkit-gradescope-") as tmp:
        work = Path(tmp)
        course = work / "course"
        shutil.copytree(_course(top), course)
        folder = work / "subs" / student / config["assignment"]
        shutil.copytree(top / "submission", folder)
        for name in config["notebooks"]:
            if not (folder / name).exists():
                found = sorted(folder.rglob(name))
                if found:
                    shutil.copyfile(found[0], folder / name)
        yield course, work / "subs", work / "out"


def main(argv: list[str] | None = None) -> int:
    """`python -m autograder.gradescope prepare|run`: what setup.sh and run_autograder call."""
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    parser.add_argument("step", choices=("prepare", "run"))
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare_course(root())
    else:
        print(f"results: {run(root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
