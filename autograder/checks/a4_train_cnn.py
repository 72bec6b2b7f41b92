"""Checks of a4_train_cnn: the submitted training curve (see autograder.curves). build_model's
test cell is scored from the notebook; the curve's cells are run on the submitted history.json
in a trusted process and the curve is compared with a replay of the notebook's training."""

from __future__ import annotations

from autograder.curves import CurveSpec, history_export

CHECKS = []
# seconds a cell may run when graded: a training cell replays its first iterations only
CELL_TIMEOUT = 300.0
CURVES = (CurveSpec(items=("test_history_valid", "test_test_accuracy"), figure="final_run"),)
EXPORTS = {spec.export: history_export(spec) for spec in CURVES}
