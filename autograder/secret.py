"""A course's secret, so that no one can draw a student's hidden cases in advance.

The kit is public, and so are its case generators: a case seeded by the student's id alone can
be drawn, and its answer computed with the reference, at home. Each course therefore gets a
random secret the first time the kit releases or grades into it, kept in the course folder
(`.cnnkit-secret`, readable by its owner only; the sandbox hides the whole course folder). A
student's key is derived from it (HMAC-SHA256 of the student and the assignment); the grader
hands a run that key alone ($CNNKIT_CASE_KEY), never the secret, and draws the same cases from
it when it compares. Rotating the secret (deleting the file; the next release or grading makes a
new one) changes every student's cases, so `cnnkit grade` then regrades everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET = ".cnnkit-secret"  # in the course folder
BYTES = 32


def course_secret(course: Path) -> bytes:
    """The course's secret, made (mode 0600) when it has none. ValueError for a secret file that
    is not the kit's: unreadable, or too short to be secret."""
    path = Path(course) / SECRET
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(BYTES) + "\n")
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the course's secret {path}: {exc.strerror}") from None
    if len(text) < BYTES:
        raise ValueError(
            f"{path} holds {len(text)} characters, too few to be a secret: delete it to make a "
            "new one (every student's hidden cases change, and cnnkit grade regrades everyone)"
        )
    return text.encode()


def student_key(secret: bytes, student: str, assignment: str) -> str:
    """The key of one student's cases of one assignment (hex): what a run is given."""
    return hmac.new(secret, f"{student}\0{assignment}".encode(), hashlib.sha256).hexdigest()


def fingerprint(secret: bytes) -> str:
    """A digest naming the secret without revealing it (grading records are keyed on it)."""
    return hashlib.sha256(b"cnnkit-course-secret\0" + secret).hexdigest()
