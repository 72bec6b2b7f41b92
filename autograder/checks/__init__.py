"""Output checks, one module per assignment named after it, each defining CHECKS: a list of
autograder.outputs.Check."""
