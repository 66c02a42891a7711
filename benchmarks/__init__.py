"""Benchmarks of DAM-CNN against the cost of its own backbone: ``python -m benchmarks.run``."""
