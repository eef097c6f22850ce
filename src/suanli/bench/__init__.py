"""Benchmarks run by ``suanli bench``: instance generators and runners (never timed tests)."""
