"""Benchmarks of the scan path: the wrk harness (``python -m bench.run``) and the locust scenarios."""
