"""autograder.secret: a course's secret and the students' keys derived from it."""

from __future__ import annotations

import stat

import pytest

from autograder import outputs
from autograder.secret import SECRET, course_secret, fingerprint, student_key


def test_a_course_gets_a_secret_of_its_own_once_readable_by_its_owner_only(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    secret = course_secret(first)
    assert stat.S_IMODE((first / SECRET).stat().st_mode) == 0o600
    assert course_secret(first) == secret  # kept, not made again
    assert course_secret(second) != secret


def test_hidden_cases_differ_between_courses_and_repeat_within_one(tmp_path):
    keys = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        keys.append(student_key(course_secret(tmp_path / name), "alice", "a1_convolution"))
    assert keys[0] == student_key(course_secret(tmp_path / "first"), "alice", "a1_convolution")
    assert student_key(course_secret(tmp_path / "first"), "bob", "a1_convolution") != keys[0]

    def first_input(key: str):
        check = next(
            c for c in outputs.checks("a1_convolution") if c.grade_id == "test_conv2d_backward"
        )
        return check.cases(outputs.case_rng("alice", "a1_convolution", check.grade_id, key))[
            0
        ].args["x"]

    assert (first_input(keys[0]) == first_input(keys[0])).all()
    assert first_input(keys[0]).tobytes() != first_input(keys[1]).tobytes()
    assert first_input(keys[0]).tobytes() != first_input("").tobytes()  # nor the public ones


def test_a_secret_that_is_not_one_is_refused_with_what_to_do(tmp_path):
    (tmp_path / SECRET).write_text("1234\n")
    with pytest.raises(ValueError, match="too few to be a secret: delete it"):
        course_secret(tmp_path)


def test_the_fingerprint_names_the_secret_without_giving_it(tmp_path):
    secret = course_secret(tmp_path)
    assert secret.decode() not in fingerprint(secret) and len(fingerprint(secret)) == 64
