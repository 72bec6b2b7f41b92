"""Grading submitted training curves (`history.json`, or a runs file of several labelled
histories): valid, consistent, and genuine.

An assignment's check module declares its `CURVES` (CurveSpecs, one per submitted file). Then:

- The sandbox runs the notebook with `$CNNKIT_REPLAY_ITERATIONS` set, so every `fit` in it stops
  after the first iterations: the notebook's own training is replayed, briefly, with the seed
  and configuration its code uses. The submitted curve files are not in the sandbox, so the
  notebook cannot hand them back. The replayed Histories come back as exports
  (`history_export`), one per curve file.
- Each curve's test cells (the instructor's code, hidden tests included) run on the SUBMITTED
  file in a trusted process of their own (`_curve_tests.py`), never in the student's kernel: the
  schema, the consistency checks and the thresholds.
- `genuine` compares the submission with the replay: the same runs, each with the same
  configuration and the same first training losses (within `cnn_core.grading.CURVE_TOLERANCE`
  for the first iterations, then within the drift that rounding on another machine grows
  into, `CURVE_DRIFT`), and the same validation losses where evaluated in the first iterations. A curve that differs, or that could not be replayed, is
  flagged `fabricated-curve` and its items earn nothing.
- The notebook must show the plotted curves: the figure cell's output must hold an image.

What this cannot see: a notebook whose training function returns a hard-coded History rather
than calling `fit` replays "correctly"; the replay proves that the curve is what the notebook's
code produces, not that the code trains.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from autograder.outcome import FlagNote, ItemResult
from autograder.static_checks import MAGIC
from cnn_core.grading import CURVE_DRIFT, CURVE_EXACT_ITERATIONS, CURVE_TOLERANCE
from cnn_core.history import History, HistoryError, load_runs

MB = 2**20
MAX_CURVE_MB = 20  # a history.json of a few hundred epochs is well under 1 MB
TEST_TIMEOUT = 300  # seconds for the curve's test cells (they may load the full data set)
RUNNER = Path(__file__).with_name("_curve_tests.py")
# What the replay must share with the submission, by configuration key
SAME_CONFIG = (
    "seed",
    "batch_size",
    "epochs",
    "eval_every",
    "val_fraction",
    "dtype",
    "optimizer",
    "schedule",
    "early_stopping",
    "augmentation",
    "normalization",
    "dataset",
    "max_iterations",
)


@dataclass(frozen=True)
class CurveSpec:
    """file: the curve file students submit, at the top of their folder; items: the test cells
    graded on it; setup: the locked cell whose imports those cells need; figure: the cell that
    must show the plot; variable: the notebook variable holding what the file was saved from;
    runs: True when that is a dict {label: History} saved with cnn_core.history.save_runs,
    False for one History saved with History.save; replay: iterations replayed per fit."""

    items: tuple[str, ...]
    file: str = "history.json"
    setup: str = "setup"
    figure: str | None = None
    variable: str = "history"
    runs: bool = False
    replay: int = 50

    @property
    def export(self) -> str:
        """The name of this curve's replay among the harvested exports."""
        return f"replay:{self.variable}"


Runs = dict[str, History]


def history_export(spec: CurveSpec):
    """The export (kernel side) of the replayed History, or runs, in `spec.variable`: each run's
    losses and configuration, keyed "<index>/<field>", and the labels in order."""

    def export(namespace) -> dict[str, Any]:
        found = namespace[spec.variable]
        runs = found if spec.runs else {"": found}
        out: dict[str, Any] = {"labels": _json_bytes([str(k) for k in runs])}
        for i, h in enumerate(runs.values()):
            out |= {
                f"{i}/train_loss": np.asarray(h.train_loss, dtype=np.float64),
                f"{i}/val_iteration": np.asarray(h.val_iteration, dtype=np.int64),
                f"{i}/val_loss": np.asarray(h.val_loss, dtype=np.float64),
                f"{i}/config": _json_bytes(h.config),
            }
        return out

    return export


def _json_bytes(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, sort_keys=True).encode(), dtype=np.uint8)


def _from_json_bytes(array: np.ndarray) -> Any:
    return json.loads(bytes(np.asarray(array).astype(np.uint8)).decode())


def replay_iterations(specs: tuple[CurveSpec, ...]) -> int:
    """Iterations each fit of the notebook runs when it is replayed for `specs`."""
    return max(s.replay for s in specs)


def load_curve(path: Path, spec: CurveSpec) -> History | Runs:
    """The submitted curve file: one History, or the runs {label: History} (HistoryError if
    it is not what `spec` expects)."""
    return load_runs(path) if spec.runs else History.load(path)


def grade_curve(
    spec: CurveSpec,
    folder: Path,
    submitted: nbformat.NotebookNode,
    source: nbformat.NotebookNode,
    replay: dict[str, np.ndarray] | str,
    points: dict[str, float],
) -> tuple[dict[str, ItemResult], list[FlagNote]]:
    """The results of the curve's items and the curve's flags. `folder`: the student's
    submission; `replay`: the exported History of the replay, or why there is none;
    `points`: max points by item."""
    path = folder / spec.file
    problem = _file_problem(path, spec.file)
    if problem:
        return {g: ItemResult(g, 0.0, points[g], [problem]) for g in spec.items}, []
    passed = run_curve_tests(source, spec, path)
    results = {}
    for gid in spec.items:
        ok, message = passed.get(gid, (False, "the test did not run"))
        results[gid] = ItemResult(
            gid, points[gid] if ok else 0.0, points[gid], [] if ok else [message]
        )
    figure = _figure_problem(submitted, spec)
    if figure:
        first = spec.items[0]
        results[first] = ItemResult(first, 0.0, points[first], [*results[first].messages, figure])
    fabricated = genuine(load_curve(path, spec), replay, spec) if _loads(path, spec) else None
    if not fabricated:
        return results, []
    voided = {
        g: ItemResult(g, 0.0, r.max_points, [*r.messages, f"no points: {fabricated}"])
        for g, r in results.items()
    }
    return voided, [FlagNote("fabricated-curve", fabricated, spec.items[0])]


def _file_problem(path: Path, name: str) -> str:
    if path.is_symlink() or not path.is_file():
        return f"{name} is missing: run the training cell, which saves it, and submit it"
    if path.stat().st_size > MAX_CURVE_MB * MB:
        return f"{name} is over {MAX_CURVE_MB} MB"
    return ""


def _loads(path: Path, spec: CurveSpec) -> bool:
    try:
        load_curve(path, spec)
    except (HistoryError, OSError, ValueError):
        return False
    return True


def _figure_problem(nb: nbformat.NotebookNode, spec: CurveSpec) -> str:
    """Why the submitted notebook lacks the plotted curves ("" when the figure is there)."""
    if spec.figure is None:
        return ""
    cell = next(
        (c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == spec.figure), None
    )
    outputs = cell.get("outputs", []) if cell is not None else []
    if any("image/png" in o.get("data", {}) for o in outputs):
        return ""
    return (
        f"the notebook does not show the plotted training curves: run the cell "
        f"{spec.figure!r}, which plots them, before you submit"
    )


def genuine(submitted: History | Runs, replay: dict[str, np.ndarray] | str, spec: CurveSpec) -> str:
    """Why the submitted History (or runs) is not what a replay of the notebook's training
    gives ("" when it is): other runs, a configuration that differs, or first losses that do
    not match."""
    if isinstance(replay, str):
        return f"not verified: the notebook's training could not be replayed ({replay})"
    try:
        labels = [str(v) for v in _from_json_bytes(replay["labels"])]
        replayed = {label: _replayed_run(replay, i) for i, label in enumerate(labels)}
    except (KeyError, ValueError, TypeError, UnicodeDecodeError):
        return "not verified: the replay could not be read"
    runs = submitted if spec.runs else {"": submitted}
    if list(runs) != labels:
        return (
            f"{spec.file} was not made by the notebook's training: it holds the runs "
            f"{_listing(runs)}, the notebook's code makes {_listing(labels)}"
        )
    for label, history in runs.items():
        where = f"{spec.file}" + (f", run {label!r}," if spec.runs else "")
        why = _run_differs(history, replayed[label], where)
        if why:
            return why
    return ""


def _replayed_run(replay: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {
        "config": _from_json_bytes(replay[f"{i}/config"]),
        "train_loss": np.asarray(replay[f"{i}/train_loss"], dtype=np.float64),
        "val_iteration": replay[f"{i}/val_iteration"].tolist(),
        "val_loss": replay[f"{i}/val_loss"].tolist(),
    }


def _listing(labels) -> str:
    return ", ".join(repr(k) for k in labels) or "none"


def _run_differs(submitted: History, replay: dict[str, Any], where: str) -> str:
    config = replay["config"]
    differ = [k for k in SAME_CONFIG if config.get(k) != submitted.config.get(k)]
    if differ:
        return (
            f"{where} was not made by the notebook's training: its configuration differs "
            f"in {', '.join(differ)}"
        )
    ours = replay["train_loss"]
    n = len(ours)
    theirs = np.asarray(submitted.train_loss[:n], dtype=np.float64)
    if n == 0 or len(theirs) < n:
        return f"{where} has fewer training losses than the replay's {n}"
    why = _train_losses_differ(theirs, ours)
    if why:
        return f"{where} was not made by the notebook's training: {why}"
    replayed = dict(zip(replay["val_iteration"], replay["val_loss"], strict=True))
    for it, loss in zip(submitted.val_iteration, submitted.val_loss, strict=True):
        if it in replayed and it <= CURVE_EXACT_ITERATIONS and not _close(loss, replayed[it]):
            return (
                f"{where} was not made by the notebook's training: the validation loss at "
                f"iteration {it} differs from the replay's"
            )
    return ""


def _train_losses_differ(theirs: np.ndarray, ours: np.ndarray) -> str:
    """Why the submitted first losses are not the replay's ("" when they are): one of the first
    CURVE_EXACT_ITERATIONS off by more than CURVE_TOLERANCE, or the later ones drifting by a
    median relative difference above CURVE_DRIFT. A run that diverged has nan losses, the same
    in the replay: nan matches nan."""
    rtol, atol = CURVE_TOLERANCE
    k = min(len(ours), CURVE_EXACT_ITERATIONS)
    close = np.isclose(theirs[:k], ours[:k], rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        first = int(np.argmax(~close))
        return (
            f"the training loss at iteration {first + 1} is {theirs[first]:.6g}, a replay of the "
            f"notebook's code gives {ours[first]:.6g}"
        )
    if len(ours) > k:
        drift = _drift(theirs[k:], ours[k:], atol)
        if np.median(drift) > CURVE_DRIFT:
            return (
                f"the training loss differs from a replay of iterations {k + 1}-{len(ours)} by "
                f"{np.median(drift):.0%} (median), more than another machine's rounding explains"
            )
    return ""


def _drift(theirs: np.ndarray, ours: np.ndarray, atol: float) -> np.ndarray:
    """Relative differences, 0 where both are nan (or both the same infinity), inf where only one is."""
    with np.errstate(invalid="ignore", divide="ignore"):
        drift = np.abs(theirs - ours) / np.maximum(np.abs(ours), atol)
    same = (theirs == ours) | (np.isnan(theirs) & np.isnan(ours))
    return np.where(same, 0.0, np.nan_to_num(drift, nan=np.inf))


def _close(theirs: float, ours: float) -> bool:
    """A validation loss within the first CURVE_EXACT_ITERATIONS against the replay's (later
    ones are left out: a loss measured on a held-out split amplifies the drift of the weights,
    by over 2% at a large learning rate, while the training losses already show it)."""
    rtol, atol = CURVE_TOLERANCE
    both_nan = math.isnan(theirs) and math.isnan(ours)
    return both_nan or math.isclose(theirs, ours, rel_tol=rtol, abs_tol=atol)


def run_curve_tests(
    source: nbformat.NotebookNode, spec: CurveSpec, curve: Path
) -> dict[str, tuple[bool, str]]:
    """{grade_id: (passed, message)} of the source's curve test cells, run on the submitted file
    `curve` in a separate trusted process (the tests chdir and load data; the grader's own
    process keeps its state)."""
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in source.cells}
    job = {
        "setup": MAGIC.sub(r"\1pass", cells[spec.setup]),
        "tests": {g: MAGIC.sub(r"\1pass", cells[g]) for g in spec.items},
    }
    with tempfile.TemporaryDirectory(prefix="cnnkit-curve-") as tmp:
        (Path(tmp) / spec.file).write_bytes(curve.read_bytes())
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MPLBACKEND": "Agg",
            "HOME": tmp,
            "MPLCONFIGDIR": tmp,
            "NUMBA_CACHE_DIR": tmp,
        }
        env |= {k: v for k, v in os.environ.items() if k in ("FASHION_MNIST_DIR", "LANG")}
        try:
            done = subprocess.run(
                [sys.executable, "-I", str(RUNNER)],
                input=json.dumps(job),
                capture_output=True,
                text=True,
                cwd=tmp,
                env=env,
                timeout=TEST_TIMEOUT,
            )
            return {g: (bool(ok), str(msg)) for g, (ok, msg) in json.loads(done.stdout).items()}
        except (subprocess.TimeoutExpired, ValueError, TypeError) as exc:
            why = f"the curve's tests could not run: {type(exc).__name__}"
            return {g: (False, why) for g in spec.items}
