"""autograder.collect: every student folder found becomes one row, ok or invalid with a reason;
zips are extracted only when every member is safe."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import collect
from autograder.collect import SubmissionsError, find_submissions

A = "a1_convolution"
NB = "a1_convolution.ipynb"


def notebook_bytes(source: str = "x = 1") -> bytes:
    """A tiny valid nbformat-4 notebook with one code cell (a fixed id: same source, same bytes)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, id="cell-0")])
    return nbformat.writes(nb).encode()


def make_student(root: Path, student: str, files: dict[str, bytes] | None = None) -> Path:
    """root/student/a1_convolution/ holding `files` (default: a good notebook); the folder."""
    folder = root / student / A
    folder.mkdir(parents=True)
    for name, data in (files if files is not None else {NB: notebook_bytes()}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def find(source: Path, workdir: Path) -> dict[str, collect.Submission]:
    return {s.student_id: s for s in find_submissions(source, A, [NB], workdir)}


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_good_submission_is_ok_with_paths_and_a_stable_digest(tmp_path):
    src = tmp_path / "src"
    folder = make_student(src, "alice")
    make_student(src, "bob")
    rows = find_submissions(src, A, [NB], tmp_path / "work")
    assert [r.student_id for r in rows] == ["alice", "bob"]
    alice, bob = rows
    assert (alice.status, alice.reason) == ("ok", "")
    assert alice.folder == folder
    assert alice.notebooks == {NB: folder / NB}
    assert len(alice.digest) == 64
    assert alice.digest == bob.digest  # same names and bytes
    assert find_submissions(src, A, [NB], tmp_path / "work") == rows  # deterministic
    data = bytearray((folder / NB).read_bytes())
    data[data.index(b"x = 1")] = ord("y")  # one byte
    (folder / NB).write_bytes(bytes(data))
    assert find(src, tmp_path)["alice"].digest != bob.digest


def test_extra_files_are_in_the_digest_and_hidden_files_are_ignored(tmp_path):
    src = tmp_path / "src"
    make_student(src, "alice")
    make_student(src, "bob", {NB: notebook_bytes(), "history.json": b'{"loss": [1.0]}'})
    make_student(src, "carol", {NB: notebook_bytes(), "history.json": b'{"loss": [2.0]}'})
    hidden = make_student(src, "dave")
    (hidden / ".ipynb_checkpoints").mkdir()
    (hidden / ".ipynb_checkpoints" / "a1_convolution-checkpoint.ipynb").write_bytes(b"junk")
    (hidden / ".DS_Store").write_bytes(b"junk")
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "__MACOSX" / "alice").mkdir(parents=True)
    rows = find(src, tmp_path / "work")
    assert sorted(rows) == ["alice", "bob", "carol", "dave"]
    assert all(r.status == "ok" for r in rows.values())
    assert rows["bob"].digest not in (rows["alice"].digest, rows["carol"].digest)
    assert rows["dave"].digest == rows["alice"].digest


def test_code_beside_the_notebook_is_listed_for_the_files_left_out_flag(tmp_path):
    """Modules, packages, compiled code and other notebooks are listed; the graded notebook, data,
    hidden files and what Python writes itself (__pycache__) are not."""
    files = {
        NB: notebook_bytes(),
        "helpers.py": b"x = 1",
        "autograder/outputs.py": b"",
        "fast.cpython-311-x86_64-linux-gnu.so": b"",
        "old.pyc": b"",
        "scratch (copy).ipynb": notebook_bytes(),
        "__pycache__/helpers.cpython-311.pyc": b"",
        ".ipynb_checkpoints/a1_convolution-checkpoint.ipynb": notebook_bytes(),
        ".hidden.py": b"",
        "history.json": b"{}",
        "notes.txt": b"",
    }
    make_student(tmp_path, "s1", files)
    (sub,) = find_submissions(tmp_path, A, [NB], tmp_path / "work")
    listed = [
        "autograder/outputs.py",
        "fast.cpython-311-x86_64-linux-gnu.so",
        "helpers.py",
        "old.pyc",
        "scratch (copy).ipynb",
    ]
    assert (sub.status, sub.code_beside) == ("ok", listed)
    assert collect.code_beside(tmp_path / "s1" / A, [NB]) == listed
    reason = collect.left_out_reason(listed + ["z.py"])
    assert reason.startswith(
        "left out of the run: autograder/outputs.py, fast.cpython-311-x86_64-linux-gnu.so, "
        "helpers.py, old.pyc, scratch (copy).ipynb and 1 more. "
    )


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, f"{NB} is missing"),
        ({NB: b""}, f"{NB} is empty"),
        ({NB: b"{not json"}, f"{NB} is not a valid notebook"),
        ({NB: json.dumps({"cells": []}).encode()}, f"{NB} is not an nbformat 4 notebook"),
        (
            {
                NB: json.dumps(
                    {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}
                ).encode()
            },
            f"{NB} is not an nbformat 4 notebook (nbformat: 3)",
        ),
        (
            {NB: json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": "oops"}).encode()},
            f"{NB} is not a valid notebook",
        ),
        (
            {"a1_convolution (1).ipynb": notebook_bytes()},
            f"expected {NB}, found 'a1_convolution (1).ipynb'",
        ),
        (
            {"A1_Convolution.ipynb": notebook_bytes()},
            f"expected {NB}, found 'A1_Convolution.ipynb'",
        ),
        ({"my_work.ipynb": notebook_bytes()}, f"expected {NB}, found 'my_work.ipynb'"),
        (
            {"x.ipynb": notebook_bytes(), "y.ipynb": notebook_bytes()},
            f"{NB} is missing (found 'x.ipynb', 'y.ipynb')",
        ),
    ],
)
def test_each_invalid_kind_is_a_row_with_a_reason_naming_the_file(tmp_path, files, reason):
    src = tmp_path / "src"
    make_student(src, "good")
    make_student(src, "bad", files)
    rows = find(src, tmp_path / "work")
    assert rows["good"].status == "ok"
    bad = rows["bad"]
    assert bad.status == "invalid"
    assert reason in bad.reason
    assert bad.notebooks == {}


def test_student_without_the_assignment_folder_is_invalid(tmp_path):
    src = tmp_path / "src"
    make_student(src, "good")
    (src / "late" / "a2_pooling_dropout").mkdir(parents=True)
    (src / "stray.txt").write_text("not a student")  # files beside student folders are no rows
    rows = find(src, tmp_path / "work")
    assert sorted(rows) == ["good", "late"]
    late = rows["late"]
    assert (late.status, late.folder, late.digest) == ("invalid", None, "")
    assert f"no folder {A}/ in late/" in late.reason


def test_unsafe_student_ids_are_invalid():
    assert collect.unsafe_id_problem("s123") == ""
    for bad in ("", ".hidden", "-rf", "a\\b", "a/b", "tab\there"):
        assert collect.unsafe_id_problem(bad), bad


def test_student_id_with_a_backslash_is_invalid_and_gets_no_folder(tmp_path):
    src = tmp_path / "src"
    make_student(src, "good")
    make_student(src, "evil\\..\\..\\x")
    rows = find(src, tmp_path / "work")
    evil = rows["evil\\..\\..\\x"]
    assert (evil.status, evil.folder, evil.notebooks) == ("invalid", None, {})
    assert "path separator" in evil.reason


def test_symlinks_in_a_folder_submission_make_it_invalid_and_are_not_followed(tmp_path):
    """Policy under test: a symbolic link anywhere in a student's folder makes the submission
    invalid, naming the link; its target is never read, not even for the digest."""
    src = tmp_path / "src"
    secret = tmp_path / "hidden_tests.py"
    secret.write_text("SECRET = 42")
    linked = make_student(src, "alice")
    (linked / "history.json").symlink_to(secret)
    nb_link = make_student(src, "bob", {})
    nb_link.joinpath(NB).symlink_to(linked / NB)
    (src / "carol").symlink_to(linked.parent)  # a whole student folder
    rows = find(src, tmp_path / "work")
    alice, bob, carol = rows["alice"], rows["bob"], rows["carol"]
    assert alice.status == "invalid" and "history.json is a symbolic link" in alice.reason
    assert alice.notebooks == {NB: linked / NB}
    clean = make_student(tmp_path / "clean", "alice")
    assert alice.digest == find(clean.parents[1], tmp_path / "w2")["alice"].digest
    assert (bob.status, bob.reason) == ("invalid", f"{NB} is a symbolic link; submit plain files")
    assert bob.notebooks == {}
    assert (carol.status, carol.folder) == ("invalid", None)
    assert "symbolic link" in carol.reason


@pytest.mark.parametrize("top", ["", "class_export/"])
def test_zip_with_or_without_a_top_folder(tmp_path, top):
    nb = notebook_bytes()
    archive = make_zip(
        tmp_path / "subs.zip",
        {
            f"{top}alice/{A}/{NB}": nb,
            f"{top}alice/{A}/history.json": b"{}",
            f"{top}bob/{A}/{NB}": b"",
            f"__MACOSX/{top}alice/{A}/._{NB}": b"junk",
        },
    )
    work = tmp_path / "work"
    rows = find(archive, work)
    assert sorted(rows) == ["alice", "bob"]
    alice = rows["alice"]
    assert alice.status == "ok"
    assert alice.folder == work / collect.EXTRACTED / top / "alice" / A
    assert alice.notebooks[NB].read_bytes() == nb
    assert (rows["bob"].status, rows["bob"].reason) == ("invalid", f"{NB} is empty")
    again = make_student(tmp_path / "folder", "alice", {NB: nb, "history.json": b"{}"})
    assert alice.digest == find(again.parents[1], tmp_path / "w2")["alice"].digest


def test_single_student_zip_is_not_mistaken_for_a_top_folder(tmp_path):
    archive = make_zip(tmp_path / "one.zip", {f"alice/{A}/{NB}": notebook_bytes()})
    assert find(archive, tmp_path / "work")["alice"].status == "ok"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.txt", "'..'"),
        (f"alice/{A}/../../../evil.txt", "'..'"),
        ("..\\evil.txt", "'..'"),
        ("{tmp}/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
    ],
)
def test_zip_slip_and_absolute_members_are_rejected_before_writing(tmp_path, member, message):
    member = member.format(tmp=tmp_path)  # an absolute path the check below can see
    archive = make_zip(tmp_path / "subs.zip", {f"alice/{A}/{NB}": notebook_bytes(), member: b"x"})
    work = tmp_path / "deep" / "work"
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SubmissionsError, match=message):
        find(archive, work)
    assert sorted(tmp_path.rglob("*")) == before  # nothing extracted, inside or out


def test_zip_symlink_member_is_rejected(tmp_path):
    archive = tmp_path / "subs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"alice/{A}/{NB}", notebook_bytes())
        link = zipfile.ZipInfo(f"alice/{A}/history.json")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(SubmissionsError, match="symbolic link"):
        find(archive, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_zip_over_the_size_or_member_limits_is_rejected(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "subs.zip", {f"alice/{A}/{NB}": b"x" * 2000, "b": b"", "c": b""})
    monkeypatch.setattr(collect, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(SubmissionsError, match="uncompresses to"):
        find(archive, tmp_path / "work")
    monkeypatch.setattr(collect, "MAX_ZIP_MEMBERS", 2)
    with pytest.raises(SubmissionsError, match="3 members"):
        find(archive, tmp_path / "work")


def test_member_larger_than_its_header_is_rejected(tmp_path):
    """A zip bomb can declare a small size: extraction stops there, fails and leaves nothing."""
    archive = make_zip(tmp_path / "subs.zip", {f"alice/{A}/{NB}": b"x" * 5000})
    data = archive.read_bytes()
    # patch the declared uncompressed size (stored uncompressed, so compressed size stays honest)
    # in both the local header (offset 22) and the central directory (offset 24)
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    small = (100).to_bytes(4, "little")
    data = (
        data[: local + 22] + small + data[local + 26 : central + 24] + small + data[central + 28 :]
    )
    archive.write_bytes(data)
    with pytest.raises(SubmissionsError, match="cannot be read"):
        find(archive, tmp_path / "work")
    assert not (tmp_path / "work" / collect.EXTRACTED).exists()


def test_corrupt_zip_and_wrong_sources_raise(tmp_path):
    with pytest.raises(SubmissionsError, match="does not exist"):
        find(tmp_path / "nowhere", tmp_path / "work")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SubmissionsError, match="neither a folder nor a zip"):
        find(text, tmp_path / "work")
    broken = make_zip(tmp_path / "subs.zip", {f"alice/{A}/{NB}": notebook_bytes()})
    broken.write_bytes(broken.read_bytes()[:-30])  # truncated central directory
    with pytest.raises(SubmissionsError):
        find(broken, tmp_path / "work")


def test_empty_sources_raise(tmp_path):
    empty = tmp_path / "empty"
    (empty / ".ipynb_checkpoints").mkdir(parents=True)
    (empty / "readme.txt").write_text("no students here")
    with pytest.raises(SubmissionsError, match="no student folders"):
        find(empty, tmp_path / "work")
    archive = make_zip(tmp_path / "empty.zip", {"__MACOSX/._x": b"", "readme.txt": b""})
    with pytest.raises(SubmissionsError, match="no student folders"):
        find(archive, tmp_path / "work")


def test_rerun_replaces_an_earlier_extraction(tmp_path):
    work = tmp_path / "work"
    first = make_zip(tmp_path / "a.zip", {f"alice/{A}/{NB}": notebook_bytes()})
    second = make_zip(tmp_path / "b.zip", {f"bob/{A}/{NB}": notebook_bytes()})
    find(first, work)
    assert sorted(find(second, work)) == ["bob"]
    assert os.listdir(work) == [collect.EXTRACTED]
