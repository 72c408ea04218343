"""Benchmarks of selfhost.backup (run by `make bench`; see bench/README.md)."""
