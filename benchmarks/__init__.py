"""Benchmarks of mae-backbone (outside the installed package): ``python -m benchmarks --help``."""
