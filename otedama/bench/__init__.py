"""Benchmarks behind ``otedama bench``: they print figures, they never assert."""
