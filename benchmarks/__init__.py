"""Benchmarks: loyalty-core's speed as a ratio of this machine's ceilings, measured in one run."""
