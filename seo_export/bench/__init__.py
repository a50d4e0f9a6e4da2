"""Benchmarks: interleaved timing (ratios, not absolute times) and peak memory."""
