"""Ladle's benchmarks (see bench/README.md and /work/shared/WORKLOADS.md); never run as tests."""
