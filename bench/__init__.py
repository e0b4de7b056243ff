"""Benchmarks (not part of the deployed project; see docs/benchmarks.md)."""
