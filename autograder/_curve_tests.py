"""Run a curve's test cells (the instructor's code) on a submitted curve file in this folder.

autograder.curves starts this file with `python -I` in a temporary folder holding only the
submitted file. It reads {"setup": code, "tests": {grade_id: code}} as JSON from stdin, runs the
setup code and then each test in one namespace, in order, and writes {grade_id: [passed,
message]} as JSON to stdout. What the cells print is discarded.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def main() -> None:
    # cnn_core.history's jsonschema would build an RFC 3987 grammar (about 1 s) for IRI format
    # checks the history schema never makes
    sys.modules.setdefault("rfc3987_syntax", None)
    job = json.load(sys.stdin)
    namespace: dict = {"__name__": "__main__"}
    results = {}
    with contextlib.redirect_stdout(io.StringIO()):
        setup_error = _run(job["setup"], namespace)
        for grade_id, code in job["tests"].items():
            if setup_error:
                results[grade_id] = [False, f"the notebook's setup failed: {setup_error}"]
            else:
                error = _run(code, namespace)
                results[grade_id] = [not error, error]
    json.dump(results, sys.stdout)


def _run(code: str, namespace: dict) -> str:
    """Run `code` in `namespace`; "" or 'ErrorType: message' of what it raised."""
    try:
        exec(compile(code, "<test>", "exec"), namespace)
    except Exception as exc:  # a failing test is a result, whatever it raises
        return f"{type(exc).__name__}: {exc}"[:500]
    return ""


if __name__ == "__main__":
    main()
