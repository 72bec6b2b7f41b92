"""Fixtures shared by the test modules."""

from __future__ import annotations

import re

import nbformat
import pytest

from autograder.release import SOLUTIONS


@pytest.fixture(scope="session")
def hidden_test_lines() -> list[str]:
    """The lines of a1's hidden tests long enough to be recognised (over 12 characters): none
    may appear in anything a student is shown."""
    nb = nbformat.read(SOLUTIONS / "a1_convolution" / "a1_convolution.ipynb", as_version=4)
    block = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)
    return [
        line.strip()
        for c in nb.cells
        for b in block.findall(c.source)
        for line in b.splitlines()
        if len(line.strip()) > 12
    ]


VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
# Gradescope's documented results.json: every documented key, nothing else
GRADESCOPE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["score"]}, {"required": ["tests"]}],
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "output_format": {"type": "string"},
        "test_output_format": {"type": "string"},
        "test_name_format": {"type": "string"},
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number"},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": {"type": "string"},
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
            },
        },
        "leaderboard": {"type": "array"},
    },
}


@pytest.fixture(scope="session")
def gradescope_schema() -> dict:
    """Gradescope's documented results.json, as a JSON schema."""
    return GRADESCOPE_SCHEMA
