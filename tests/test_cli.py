"""The `cnnkit` command line."""

from __future__ import annotations

import subprocess
import sys

from autograder.cli import main
from cnn_core import zoo


def test_check_checks_every_op_and_exits_zero(capsys):
    assert main(["check", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 14 and "FAIL" not in out
    assert "60,840" in out  # LeNet-5's parameter count in the summary table
    assert "all 14 ops pass" in out


def test_check_exits_nonzero_when_an_op_is_wrong(monkeypatch, capsys):
    from cnn_core import functional

    right = functional.relu_backward
    monkeypatch.setattr(functional, "relu_backward", lambda dout, cache: 2 * right(dout, cache))
    assert main(["check"]) == 1
    assert "FAILED: relu" in capsys.readouterr().out


def test_zoo_lists_names_and_prints_tables(capsys):
    assert main(["zoo"]) == 0
    assert capsys.readouterr().out.split() == list(zoo.NAMES)
    assert main(["zoo", "vgg16"]) == 0
    assert "138,357,544" in capsys.readouterr().out


def test_zoo_unknown_name_is_a_clear_error(capsys):
    assert main(["zoo", "lenet6"]) == 2
    err = capsys.readouterr().err
    assert "lenet6" in err and "resnet50" in err


def test_console_script_runs():
    done = subprocess.run(
        [sys.executable, "-m", "autograder.cli", "zoo", "lenet5"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "C3" in done.stdout and "1,516" in done.stdout


def test_demo_grades_a_synthetic_class_as_expected(capsys, tmp_path):
    """The README's first command: every synthetic student graded as expected, files listed."""
    assert main(["demo", "--keep", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "full-marks" in out and "38 / 38" in out and "UNEXPECTED" not in out
    assert (tmp_path / "course" / "grades" / "a1_convolution" / "grades.csv").is_file()


def test_grade_passes_every_limit_flag_to_the_sandbox(monkeypatch, capsys, tmp_path):
    from autograder import grade as grading

    seen = {}

    def fake_grade(assignment, submissions, course, out, workers, limits, force, **kwargs):
        seen["limits"] = limits
        raise grading.GradeError("stopped after the limits were made")

    monkeypatch.setattr(grading, "grade", fake_grade)
    flags = ["--timeout", "90", "--memory-mb", "1024", "--max-output-mb", "5"]
    flags += ["--cell-timeout", "7", "--case-timeout", "3"]
    argv = ["grade", "a1_convolution", str(tmp_path), *flags, "--max-processes", "32"]
    assert main(argv) == 1
    assert "stopped after the limits were made" in capsys.readouterr().err
    limits = seen["limits"]
    assert (limits.timeout, limits.cell_timeout, limits.memory_mb) == (90.0, 7.0, 1024)
    assert (limits.max_output_mb, limits.max_processes, limits.case_timeout) == (5, 32, 3.0)
    main(argv[:3])  # without --cell-timeout: the assignment's own, chosen when grading starts
    assert seen["limits"].cell_timeout is None and seen["limits"].case_timeout == 10.0


def test_grade_refuses_a_limit_that_is_not_positive(capsys, tmp_path):
    assert main(["grade", "a1_convolution", str(tmp_path), "--max-processes", "0"]) == 1
    assert "max_processes must be positive, got 0" in capsys.readouterr().err
