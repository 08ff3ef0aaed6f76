"""Evaluation: the runner that measures every uncertainty method on a run's data sets, the
method registry, score selection on validation shifts, MC dropout, and the report.

Imports no deployment code and no pipeline stage (see docs/architecture.md)."""
