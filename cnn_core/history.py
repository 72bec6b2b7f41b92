"""A training run's record, `history.json`: the file students submit with their training notebook.

The format is `cnn_core/history.schema.json` (JSON Schema, version 1). Loading checks the schema
and the agreements between fields (one entry per epoch everywhere, iterations in order and within
the run) and raises `HistoryError` naming the first field that is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from itertools import pairwise
from pathlib import Path

FORMAT = "cnnkit-history"
RUNS_FORMAT = "cnnkit-runs"  # several labelled histories of one experiment in one file
VERSION = 1
SCHEMA: dict = json.loads(resources.files("cnn_core").joinpath("history.schema.json").read_text())


class HistoryError(ValueError):
    """A history that breaks the schema or contradicts itself; the message names the field."""


@dataclass
class History:
    """Losses and accuracies of one training run, and the configuration that produced them.

    train_loss: mini-batch loss at every iteration (optimiser step), iteration i at index i - 1.
    epoch_end_iteration, train_accuracy, lr, wall_time: one entry per epoch: the iteration the
    epoch ended at, the accuracy on the epoch's training batches (fraction), the learning rate
    used during it and the seconds elapsed since training started.
    val_iteration, val_loss, val_accuracy: one entry per evaluation on the validation split.
    """

    config: dict
    train_loss: list[float] = field(default_factory=list)
    epoch_end_iteration: list[int] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    val_iteration: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    test: dict | None = None
    stopped_early: bool = False

    @property
    def iterations(self) -> int:
        return len(self.train_loss)

    @property
    def epochs_done(self) -> int:
        return len(self.epoch_end_iteration)

    def epoch_of(self, iteration: int) -> float:
        """Fractional epoch at which `iteration` ended (for plotting against epochs)."""
        start, done = 0, 0
        for end in self.epoch_end_iteration:
            if iteration <= end:
                return done + (iteration - start) / max(end - start, 1)
            start, done = end, done + 1
        return float(done)

    def to_dict(self) -> dict:
        """The JSON document, as the schema lays it out."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config,
            "train_loss": [float(v) for v in self.train_loss],
            "epochs": {
                "end_iteration": [int(v) for v in self.epoch_end_iteration],
                "train_accuracy": [float(v) for v in self.train_accuracy],
                "lr": [float(v) for v in self.lr],
            },
            "val": {
                "iteration": [int(v) for v in self.val_iteration],
                "loss": [float(v) for v in self.val_loss],
                "accuracy": [float(v) for v in self.val_accuracy],
            },
            "test": self.test,
            "wall_time": [float(v) for v in self.wall_time],
            "stopped_early": bool(self.stopped_early),
        }

    @classmethod
    def from_dict(cls, doc: dict, source: str = "history") -> History:
        """Build a History from a parsed document, checking it first (HistoryError if wrong)."""
        validate(doc, source)
        return cls(
            config=doc["config"],
            train_loss=list(doc["train_loss"]),
            epoch_end_iteration=list(doc["epochs"]["end_iteration"]),
            train_accuracy=list(doc["epochs"]["train_accuracy"]),
            lr=list(doc["epochs"]["lr"]),
            wall_time=list(doc["wall_time"]),
            val_iteration=list(doc["val"]["iteration"]),
            val_loss=list(doc["val"]["loss"]),
            val_accuracy=list(doc["val"]["accuracy"]),
            test=doc.get("test"),
            stopped_early=doc.get("stopped_early", False),
        )

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the history as JSON; refuses to replace an existing file unless `overwrite`."""
        path = Path(path)
        validate(self.to_dict(), str(path))
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read and check a history file. Raises HistoryError naming what is wrong."""
        path = Path(path)
        return cls.from_dict(_read_json(path), str(path))


def save_runs(runs: dict[str, History], path: str | Path, overwrite: bool = False) -> Path:
    """Write an experiment's runs, {label: History}, as one JSON file (refuses to replace an
    existing file unless `overwrite`). Labels are non-empty strings; every History is checked."""
    path = Path(path)
    if not isinstance(runs, dict) or not runs:
        raise HistoryError(f"{path}: runs must be a non-empty dict {{label: History}}")
    docs = {}
    for label, history in runs.items():
        if not isinstance(label, str) or not label:
            raise HistoryError(f"{path}: run label {label!r} is not a non-empty string")
        if not isinstance(history, History):
            raise HistoryError(
                f"{path}: run {label!r} is a {type(history).__name__}, not the History fit returns"
            )
        docs[label] = history.to_dict()
        validate(docs[label], f"{path}: run {label!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    doc = {"format": RUNS_FORMAT, "version": VERSION, "runs": docs}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def load_runs(path: str | Path) -> dict[str, History]:
    """Read an experiment's runs file written by `save_runs`: {label: History}, in the file's
    order. Raises HistoryError naming the run and field that is wrong."""
    path = Path(path)
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != RUNS_FORMAT:
        raise HistoryError(f"{path}: not a runs file (format {RUNS_FORMAT!r}) of save_runs")
    if doc.get("version") != VERSION:
        raise HistoryError(f"{path}: runs file version {doc.get('version')!r}, expected {VERSION}")
    runs = doc.get("runs")
    if not isinstance(runs, dict) or not runs:
        raise HistoryError(f"{path}: field 'runs' must hold at least one labelled history")
    return {
        str(label): History.from_dict(run, f"{path}: run {label!r}") for label, run in runs.items()
    }


def _read_json(path: Path):
    """The parsed JSON of `path`; HistoryError when it is not JSON text."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HistoryError(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError:
        raise HistoryError(f"{path}: not a text file") from None


def validate(doc, source: str = "history") -> None:
    """Check `doc` against the schema and its fields against each other."""
    # imported here, not with the module: jsonschema takes about 1 s to import, which every
    # notebook importing cnn_core would pay
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is None:
        _check_agreement(doc, source)
        return
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        raise HistoryError(f"{source}: field '{'.'.join([*path, missing])}' is missing")
    where = ".".join(path) or "(top level)"
    raise HistoryError(f"{source}: field '{where}': {error.message}")


def _check_agreement(doc: dict, source: str) -> None:
    """Cross-field rules a schema cannot state: equal lengths, order and range of iterations."""
    n = len(doc["train_loss"])
    epochs, val = doc["epochs"], doc["val"]
    _same_length(
        source,
        {
            "epochs.end_iteration": epochs["end_iteration"],
            "epochs.train_accuracy": epochs["train_accuracy"],
            "epochs.lr": epochs["lr"],
            "wall_time": doc["wall_time"],
        },
    )
    _same_length(source, {f"val.{k}": v for k, v in val.items()})
    _increasing(source, "epochs.end_iteration", epochs["end_iteration"], n)
    _increasing(source, "val.iteration", val["iteration"], n)
    if epochs["end_iteration"] and epochs["end_iteration"][-1] != n:
        raise HistoryError(
            f"{source}: field 'epochs.end_iteration': the last epoch ends at "
            f"iteration {epochs['end_iteration'][-1]} but train_loss has {n} entries"
        )
    if any(b < a for a, b in pairwise(doc["wall_time"])):
        raise HistoryError(f"{source}: field 'wall_time': times must not decrease")
    for name, values in (("train_loss", doc["train_loss"]), ("val.loss", val["loss"])):
        if any(math.isinf(v) for v in values):
            raise HistoryError(f"{source}: field '{name}': infinite loss")


def _same_length(source: str, fields: dict[str, list]) -> None:
    lengths = {name: len(v) for name, v in fields.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise HistoryError(f"{source}: fields disagree in length: {listing}")


def _increasing(source: str, name: str, values: list[int], last: int) -> None:
    for a, b in pairwise(values):
        if b <= a:
            raise HistoryError(
                f"{source}: field '{name}': iterations must increase, got {a} then {b}"
            )
    if values and values[-1] > last:
        raise HistoryError(
            f"{source}: field '{name}': iteration {values[-1]} is past the last "
            f"recorded iteration {last}"
        )
