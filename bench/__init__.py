"""Benchmark harness: the service's throughput against the database's own limit.

`make bench` runs `python -m bench.run`; nothing here ships in `src/`.
"""
