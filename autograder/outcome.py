"""What grading one student's submission produced: the record every report is written from.

One `Outcome` per student row, saved as `results/<student_id>.json` in the output folder, so that
an unchanged submission is not graded again and the reports can be rewritten from the records
alone. Everything here is plain data; nothing in it comes from the student's process unparsed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# `status` of a row in grades.csv
STATUSES = ("graded", "timeout", "memory", "crashed", "invalid")
# Flags a row can carry, each with a reason in the feedback and the log
FLAGS = (
    "timeout",
    "memory",
    "crashed",
    "invalid",
    "tampered",
    "reference-use",
    "forbidden-library",
    "fabricated-curve",
    "output-truncated",  # informational: costs no points
    "files-left-out",  # informational: code beside the notebooks, which the run does not get
)
# 2: the submission's timestamp; 3: what the sandbox held; 4: runs hold only the notebooks
RECORD_VERSION = 4


@dataclass(frozen=True)
class Item:
    """One autograded test cell of the assignment: its grade_id, its notebook and its points."""

    grade_id: str
    notebook: str  # file name, e.g. "a1_convolution.ipynb"
    max_points: float


@dataclass
class ItemResult:
    """The points one student earned on one Item and, when short of full marks, why: each
    message names the failing case and the error, never hidden test code or hidden inputs."""

    grade_id: str
    points: float
    max_points: float
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlagNote:
    """A flag of FLAGS and its human-readable reason (`cell`: the grade_id it concerns)."""

    name: str
    reason: str
    cell: str | None = None


@dataclass
class Outcome:
    """The graded submission of one student: status, flags, per-item results.

    `key` identifies what was graded: the submission's digest together with the grading set-up
    (source notebooks, limits), so that a re-run recognises unchanged work. `reason` explains a
    status other than "graded". `seconds` is wall time, kept for the summary only: it is not
    written into grades.csv or the feedback, which must be identical across re-runs.
    """

    student_id: str
    assignment: str
    status: str
    items: list[ItemResult] = field(default_factory=list)
    flags: list[FlagNote] = field(default_factory=list)
    reason: str = ""
    key: str = ""
    seconds: float = 0.0
    attempts: int = 0  # sandbox runs it took (a crashed run is retried once)
    timestamp: str | None = None  # the submission's timestamp.txt, as nbgrader submit wrote it
    # what the sandbox enforced in the last run, by aspect (network, memory, group, ...): where a
    # machine could not give a control group or namespaces, it says so
    isolation: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Outcome.status must be one of {STATUSES}, got {self.status!r}")
        unknown = [f.name for f in self.flags if f.name not in FLAGS]
        if unknown:
            raise ValueError(f"unknown flags {unknown}; known: {FLAGS}")

    @property
    def score(self) -> float:
        return round(sum(r.points for r in self.items), 6)

    @property
    def max_score(self) -> float:
        return round(sum(r.max_points for r in self.items), 6)

    @property
    def flag_names(self) -> list[str]:
        """Distinct flag names in FLAGS order."""
        present = {f.name for f in self.flags}
        return [name for name in FLAGS if name in present]

    def to_json(self) -> str:
        return json.dumps({"version": RECORD_VERSION, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        """The Outcome a to_json wrote; ValueError for another version or a damaged record."""
        try:
            data = json.loads(text)
            if data.pop("version", None) != RECORD_VERSION:
                raise ValueError("record version differs")
            data["items"] = [ItemResult(**r) for r in data["items"]]
            data["flags"] = [FlagNote(**f) for f in data["flags"]]
            return cls(**data)
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"damaged grading record: {exc}") from None

    def save(self, folder: Path) -> Path:
        """Write results/<student_id>.json under `folder` atomically; the path written."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.student_id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path
