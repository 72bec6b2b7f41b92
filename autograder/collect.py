"""Find the submissions `cnnkit grade` will grade, one row per student folder found.

`source` is a folder in nbgrader's layout, `<source>/<student_id>/<assignment>/<notebook>.ipynb`
plus whatever else the assignment collects (such as `history.json`), or a `.zip` of one, with that
layout at its root or inside a single top folder. Zips are extracted into the grader's `workdir`
only after every member has been checked: no absolute paths, no `..`, no symbolic links, a bounded
member count and uncompressed size. A bad archive raises SubmissionsError, since nothing in it can
be graded; a bad submission is a row with status "invalid" and a reason, never an exception.

Hidden entries (names starting with '.', such as `.ipynb_checkpoints` and `.DS_Store`, and
`__MACOSX`) are not part of any submission. A symbolic link inside a student's folder makes the
submission invalid: it is never followed, so it cannot point the grader at another student's
files or at hidden material.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MB = 2**20
MAX_ZIP_BYTES = 2 * 2**30  # total uncompressed size of an archive of submissions
MAX_ZIP_MEMBERS = 100_000  # a class of 300 has a few thousand; more is an attack or a mistake
MAX_NOTEBOOK_MB = 100  # a notebook is parsed in the grader's process: bound what it reads
CHUNK = 1 * MB  # bytes per read when copying or hashing
EXTRACTED = "submissions"  # the folder under workdir that a zip is extracted into
IGNORED = ("__MACOSX",)  # besides names starting with '.'
# What a browser or a file manager appends to a downloaded name: "a1 (1).ipynb", "a1 - Copy.ipynb"
COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|[\s_-]*copy(\s*\d+)?)+$", re.IGNORECASE)
# Files a run could import or execute, were they in its work folder, which holds the notebooks only.
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".ipynb")
NAMED = 5  # files named by left_out_reason; the rest are counted


class SubmissionsError(ValueError):
    """The source of submissions cannot be read at all: missing, not a folder or zip, a corrupt
    or unsafe archive, or no student folders."""


@dataclass
class Submission:
    """One student's submission of one assignment.

    `folder` is the student's assignment folder (None when there is none, or when the student id is
    unsafe; such an id must never be used to build a path). `notebooks` maps each expected notebook
    name that was found as a readable nbformat-4 notebook to its path. `digest` is the sha256 hex of
    the assignment folder's files (names and bytes, sorted by name); "" without a folder.
    """

    student_id: str
    folder: Path | None
    notebooks: dict[str, Path] = field(default_factory=dict)
    status: str = "ok"  # "ok" or "invalid"
    reason: str = ""  # why it is invalid: each problem naming its file, joined by "; "
    digest: str = ""
    code_beside: list[str] = field(default_factory=list)  # `code_beside` of the folder


def find_submissions(
    source: Path, assignment: str, expected_notebooks: Sequence[str], workdir: Path
) -> list[Submission]:
    """The submissions of `assignment` in `source` (a folder or a .zip), sorted by student id.

    `expected_notebooks` are file names such as "a1_convolution.ipynb". A zip is extracted into
    `workdir`/submissions, replacing what an earlier run left there. Raises SubmissionsError when
    `source` holds nothing gradable.
    """
    source = Path(source)
    if source.is_dir():
        root = source
    elif source.is_file() and zipfile.is_zipfile(source):
        root = _layout_root(extract_zip(source, Path(workdir) / EXTRACTED), assignment)
    elif source.exists():
        raise SubmissionsError(f"{source} is neither a folder nor a zip archive")
    else:
        raise SubmissionsError(f"{source} does not exist")
    students = [p for p in sorted(root.iterdir()) if _is_student_entry(p)]
    if not students:
        raise SubmissionsError(
            f"no student folders in {source}; expected "
            f"<student_id>/{assignment}/<notebook>.ipynb inside it"
        )
    return [_check_student(p, assignment, expected_notebooks) for p in students]


# --------------------------------------------------------------------------- archives


def extract_zip(archive: Path, dest: Path) -> Path:
    """Check every member of `archive`, then extract it into `dest` (emptied first); return dest.

    Raises SubmissionsError for an unsafe member before writing anything, and for a corrupt
    archive after removing what was written.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_members(archive, members)
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for info in members:
                _extract_member(zf, info, dest)
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as exc:
        # RuntimeError: an encrypted member; OSError and EOFError: a truncated or damaged one
        shutil.rmtree(dest, ignore_errors=True)  # half an extraction is nothing to grade
        raise SubmissionsError(f"{archive} cannot be read: {exc}") from exc
    return dest


def _check_members(archive: Path, members: list[zipfile.ZipInfo]) -> None:
    """SubmissionsError unless every member is a plain file or folder with a relative path inside
    the archive, and the archive's member count and uncompressed size are within the limits."""
    if len(members) > MAX_ZIP_MEMBERS:
        raise SubmissionsError(
            f"{archive} has {len(members)} members; the limit is {MAX_ZIP_MEMBERS}"
        )
    total = sum(info.file_size for info in members)
    if total > MAX_ZIP_BYTES:
        raise SubmissionsError(
            f"{archive} uncompresses to {total / MB:.0f} MB; the limit is {MAX_ZIP_BYTES // MB} MB"
        )
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise SubmissionsError(f"{archive} is unsafe: member {info.filename!r} {problem}")


def _member_problem(info: zipfile.ZipInfo) -> str:
    """Why extracting this member could write outside the destination ("" when it cannot)."""
    name = info.filename
    parts = re.split(r"[\\/]", name)  # a zip made on Windows may use either separator
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in parts:
        return "climbs out of the archive with '..'"
    mode = info.external_attr >> 16  # the Unix mode, when the archiver recorded one
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no file type recorded
        return "is not a regular file or folder"
    return ""


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Write one checked member under `dest`. zipfile stops at the size the header declares (the
    size the limit was checked against), and a member that holds more fails its CRC check."""
    target = dest / info.filename
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _layout_root(extracted: Path, assignment: str) -> Path:
    """The folder that holds the student folders: `extracted` itself, or its single top folder
    when that folder is not a student's (has no `assignment` folder) but its children are."""
    visible = [p for p in extracted.iterdir() if not _hidden(p)]
    if len(visible) != 1 or not visible[0].is_dir() or (visible[0] / assignment).is_dir():
        return extracted
    top = visible[0]
    if any((p / assignment).is_dir() for p in top.iterdir() if not _hidden(p)):
        return top
    return extracted


# --------------------------------------------------------------------------- one student


def _check_student(path: Path, assignment: str, expected: Sequence[str]) -> Submission:
    """The row of the student whose folder (or symbolic link) is `path`."""
    student_id = path.name
    problem = unsafe_id_problem(student_id)
    if problem:
        return _invalid(student_id, f"student id {student_id!r} {problem}")
    if path.is_symlink():
        return _invalid(student_id, f"{student_id} is a symbolic link, not a folder")
    folder = path / assignment
    if folder.is_symlink() or not folder.is_dir():
        return _invalid(student_id, f"no folder {assignment}/ in {student_id}/")
    files, problems = _scan(folder)
    # top-level notebooks that are not expected: candidates for a misnamed one
    strays = [
        f for f in files if "/" not in f and f.lower().endswith(".ipynb") and f not in expected
    ]
    notebooks = {}
    for name in expected:
        problem = _notebook_problem(folder, name, files, strays)
        if not problem:
            notebooks[name] = folder / name
        elif not any(p.startswith(f"{name} ") for p in problems):  # a linked notebook: said once
            problems.append(problem)
    return Submission(
        student_id=student_id,
        folder=folder,
        notebooks=notebooks,
        status="invalid" if problems else "ok",
        reason="; ".join(problems),
        digest=digest(folder, files),
        code_beside=_code(files, expected),
    )


def code_beside(folder: Path, notebooks: Sequence[str]) -> list[str]:
    """The files in `folder` (as a submission's are found: visible, links not followed) that a
    run could import or execute, other than the `notebooks` (file names): modules, packages,
    compiled code, other notebooks. Sorted '/'-separated names relative to `folder`."""
    return _code(_scan(folder)[0], notebooks)


def _code(files: list[str], notebooks: Sequence[str]) -> list[str]:
    return [
        name
        for name in files
        if name.endswith(CODE_SUFFIXES)
        and name not in notebooks
        and "__pycache__" not in name.split("/")  # what Python writes beside a module it imports
    ]


def left_out_reason(files: Sequence[str]) -> str:
    """Why the `code_beside` files do not run: the reason of the files-left-out flag."""
    named = ", ".join(files[:NAMED]) + (
        f" and {len(files) - NAMED} more" if len(files) > NAMED else ""
    )
    return (
        f"left out of the run: {named}. Only the notebook is run (with the files the release "
        "came with), so code in other files does not run: put it in the notebook"
    )


def _invalid(student_id: str, reason: str) -> Submission:
    """A row with no folder to grade."""
    return Submission(student_id, None, status="invalid", reason=reason)


def unsafe_id_problem(student_id: str) -> str:
    """Why `student_id` is not a safe folder name ("" when it is)."""
    if not student_id or not student_id.isprintable():
        return "is empty or has control characters"
    if "/" in student_id or "\\" in student_id:
        return "contains a path separator"
    if student_id.startswith((".", "-")):
        return "starts with '.' or '-'"
    return ""


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED


def _is_student_entry(path: Path) -> bool:
    """A visible folder, or a symbolic link (reported invalid, never followed)."""
    return not _hidden(path) and (path.is_symlink() or path.is_dir())


def _scan(folder: Path) -> tuple[list[str], list[str]]:
    """The visible regular files under `folder` as sorted '/'-separated relative names, and a
    problem for each symbolic link or special file (neither is followed nor read)."""
    files: list[str] = []
    problems: list[str] = []
    for path in _walk(folder):
        name = path.relative_to(folder).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            problems.append(f"{name} is a symbolic link; submit plain files")
        elif stat.S_ISREG(mode):
            files.append(name)
        elif not stat.S_ISDIR(mode):
            problems.append(f"{name} is not a regular file")
    return sorted(files), problems


def _walk(folder: Path) -> Iterator[Path]:
    """Every visible entry under `folder`, depth first, without following symbolic links."""
    for path in sorted(folder.iterdir()):
        if _hidden(path):
            continue
        yield path
        if path.is_dir() and not path.is_symlink():
            yield from _walk(path)


def _notebook_problem(folder: Path, name: str, files: list[str], strays: list[str]) -> str:
    """Why `folder`/`name` is not a usable notebook ("" when it is one). `files` are the folder's
    regular files, as from _scan; `strays` its unexpected notebooks, to recognise a misnamed one."""
    if name not in files:
        return _missing_notebook(name, strays)
    path = folder / name
    size = path.stat().st_size
    if size == 0:
        return f"{name} is empty"
    if size > MAX_NOTEBOOK_MB * MB:
        return f"{name} is {size / MB:.0f} MB; the limit is {MAX_NOTEBOOK_MB} MB"
    try:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if nb.get("nbformat") != 4:
            return f"{name} is not an nbformat 4 notebook (nbformat: {nb.get('nbformat')})"
        nbformat.validate(nb)
    except Exception as exc:  # anything a corrupt file raises is the submission's problem
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{name} is not a valid notebook: {first_line[:200]}"
    return ""


def _missing_notebook(name: str, strays: list[str]) -> str:
    """The reason for an expected notebook that is not there: a stray notebook with the same
    name but for case or a copy suffix, or the only stray one, is reported as misnamed."""
    same = [f for f in strays if _plain_stem(f) == _plain_stem(name)]
    candidates = same or (strays if len(strays) == 1 else [])
    if candidates:
        return f"expected {name}, found {candidates[0]!r}"
    if strays:
        return f"{name} is missing (found {', '.join(repr(f) for f in strays)})"
    return f"{name} is missing"


def _plain_stem(file_name: str) -> str:
    """A notebook's name without '.ipynb', copy suffixes or case: 'A1 (1).ipynb' -> 'a1'."""
    stem = file_name[: -len(".ipynb")] if file_name.lower().endswith(".ipynb") else file_name
    return COPY_SUFFIX.sub("", stem).strip().lower()


def digest(folder: Path, files: list[str]) -> str:
    """sha256 hex over `files` (relative names under `folder`, sorted): each name and size, then
    its bytes, so that neither renaming nor moving bytes between files goes unnoticed."""
    h = hashlib.sha256()
    for name in sorted(files):
        path = folder / name
        h.update(f"{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    return h.hexdigest()
