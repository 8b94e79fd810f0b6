"""Benchmarks: each prints ratios against the raw library measured in the same run."""
