"""Benchmarks: run by hand or by `courier bench`, never by the default test run."""
