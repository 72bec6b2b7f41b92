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
