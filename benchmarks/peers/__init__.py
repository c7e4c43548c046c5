"""Alternatives to jobtrigger, written the way a team would write them, for ``benchmarks/compare.py``."""
