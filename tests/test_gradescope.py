"""The Gradescope bundle, run as Gradescope runs it: unpacked into a root laid out as Gradescope
lays it out (source/, submission/, submission_metadata.json, results/), its setup step, then its
run_autograder script for each kind of submission."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from autograder.cli import main
from autograder.gradescope import ROOT_ENV, held, student_id
from autograder.secret import SECRET
from autograder.synthetic import STUDENTS, filled

ROOT = Path(__file__).resolve().parents[1]
A1 = "a1_convolution"
NOTEBOOK = f"{A1}.ipynb"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(the zip, the course it was made from)."""
    top = tmp_path_factory.mktemp("gradescope")
    course = top / "course"
    out = top / "autograder.zip"
    assert main(["gradescope", A1, "--course", str(course), "--out", str(out)]) == 0
    return out, course


def _root(bundle_zip: Path, folder: Path) -> Path:
    """A Gradescope root with the bundle unpacked (modes kept, as unzip keeps them) and set up."""
    source = folder / "source"
    with zipfile.ZipFile(bundle_zip) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, source))
            path.chmod((info.external_attr >> 16) & 0o777 or 0o644)
    (folder / "submission").mkdir()
    (folder / "results").mkdir()
    env = {**os.environ, ROOT_ENV: str(folder)}
    subprocess.run(["python", "-m", "autograder.gradescope", "prepare"], env=env, check=True)
    return folder


def _submit(root: Path, files: dict[str, bytes], sid: str = "s1001") -> dict:
    """Run run_autograder on `files` as `sid`'s submission; the results.json it wrote."""
    shutil.rmtree(root / "submission")
    (root / "submission").mkdir()
    for name, data in files.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(data)
    meta = {"users": [{"email": "ann@uni.edu", "id": 77, "name": "Ann", "sid": sid}]}
    (root / "submission_metadata.json").write_text(json.dumps(meta))
    env = {**os.environ, ROOT_ENV: str(root)}
    script = root / "source" / "run_autograder"
    subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=600)
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture(scope="module")
def gradescope_root(bundle, tmp_path_factory) -> Path:
    return _root(bundle[0], tmp_path_factory.mktemp("autograder"))


def _nb_bytes(nb: nbformat.NotebookNode) -> bytes:
    return nbformat.writes(nb).encode()


def _release() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "assignments" / A1 / NOTEBOOK, as_version=4)


def test_the_bundle_holds_the_scripts_the_kit_and_the_course(bundle):
    out, course = bundle
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
        config = json.loads(zf.read("config.json"))
        secret = zf.read(f"course/{SECRET}").decode()
        setup = zf.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "cnnkit/pyproject.toml"} <= names
    assert f"course/source/{A1}/{NOTEBOOK}" in names and f"course/release/{A1}/{NOTEBOOK}" in names
    assert not any("solutions/" in n or "__pycache__" in n or n.startswith("tests/") for n in names)
    assert modes["setup.sh"] == modes["run_autograder"] == 0o755
    assert modes[f"course/{SECRET}"] == 0o600
    # the same secret as the course's own grading: a student's hidden cases are the same
    assert secret == (course / SECRET).read_text()
    assert config == {
        "assignment": A1,
        "notebooks": [NOTEBOOK],
        "visibility": "after_published",
        "timeout": 600.0,
    }
    assert "pip install --quiet ./cnnkit" in setup and "torch" not in setup


def test_an_existing_bundle_is_kept_without_force(bundle, capsys):
    out, course = bundle
    before = out.read_bytes()
    assert main(["gradescope", A1, "--course", str(course), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before


def test_a_correct_submission_scores_full_marks(gradescope_root, gradescope_schema):
    own = (STUDENTS / A1 / "nested.ipynb").read_bytes()
    results = _submit(gradescope_root, {NOTEBOOK: own})
    jsonschema.validate(results, gradescope_schema)
    assert results["score"] == 38.0
    assert results["output"].startswith("Run in the kit's sandbox: a user of its own")
    assert "uid" not in results["output"]  # the details are the staff's, on stdout
    names = [t["name"] for t in results["tests"]]
    assert "Task 5.2: conv2d_backward (test_conv2d_backward)" in names
    assert {t["visibility"] for t in results["tests"]} == {"after_published"}
    assert all(t["score"] == t["max_score"] for t in results["tests"])


def test_a_half_done_submission_in_a_folder_scores_what_it_did(gradescope_root, gradescope_schema):
    """Half the answers, the notebook inside a folder (an uploaded zip or repository)."""
    own = nbformat.read(STUDENTS / A1 / "loops.ipynb", as_version=4)
    half = filled(own, _release(), share=0.5)
    results = _submit(gradescope_root, {f"work/{NOTEBOOK}": _nb_bytes(half)})
    jsonschema.validate(results, gradescope_schema)
    assert 0 < results["score"] < 38
    failed = [t for t in results["tests"] if t["score"] < t["max_score"]]
    assert failed and all(t["output"] for t in failed)


def test_a_broken_notebook_scores_zero_and_says_why(gradescope_root, gradescope_schema):
    results = _submit(gradescope_root, {NOTEBOOK: b'{"cells": [oops'})
    jsonschema.validate(results, gradescope_schema)
    assert results["score"] == 0 and "invalid" in results["output"]
    assert "not a valid notebook" in results["output"]


def test_a_notebook_of_another_assignment_is_refused_with_a_clear_message(
    gradescope_root, gradescope_schema
):
    a2 = (ROOT / "assignments" / "a2_pooling_dropout" / "a2_pooling_dropout.ipynb").read_bytes()
    results = _submit(gradescope_root, {"a2_pooling_dropout.ipynb": a2})
    jsonschema.validate(results, gradescope_schema)
    assert results["score"] == 0
    assert "grades a1_convolution: it needs a1_convolution.ipynb" in results["output"]
    assert "a2_pooling_dropout.ipynb" in results["output"]
    # renamed to look right: its cells give it away
    results = _submit(gradescope_root, {NOTEBOOK: a2})
    assert results["score"] == 0 and "holds none of its cells" in results["output"]


def test_the_student_is_named_by_sid_then_email_then_id(tmp_path):
    meta = tmp_path / "submission_metadata.json"
    for user, expected in [
        ({"sid": "s42", "email": "a@b.c", "id": 7}, "s42"),
        ({"sid": "", "email": "a@b.c", "id": 7}, "a@b.c"),
        ({"id": 7}, "7"),
    ]:
        meta.write_text(json.dumps({"users": [user]}))
        assert student_id(meta) == expected
    meta.write_text(json.dumps({"users": []}))
    with pytest.raises(ValueError, match="names no user"):
        student_id(meta)


def test_setup_sh_is_a_valid_script(bundle, tmp_path):
    with zipfile.ZipFile(bundle[0]) as zf:
        for name in ("setup.sh", "run_autograder"):
            path = tmp_path / name
            path.write_bytes(zf.read(name))
            path.chmod(stat.S_IRWXU)
            subprocess.run(["bash", "-n", str(path)], check=True)


def test_the_student_is_told_how_the_notebook_ran():
    confined = {"network": "unshare --net (loopback only)", "group": "cgroup v1: 2048 MB ..."}
    assert held(confined).startswith("Run in the kit's sandbox") and "one memory" in held(confined)
    no_group = confined | {"group": "none: control groups unavailable: ..."}
    assert "memory limited per process" in held(no_group)
    bare = {"network": "unavailable: unshare failed", "group": "none: ..."}
    assert (
        held(bare) == "Run with time and memory limits per process (this container allows no more)."
    )
    assert held({}) == "The notebook was not run."
