"""Benchmarks of the backprop course kit: training speed, hidden-check time, grading throughput.

Run all three with `python -m benchmarks` (`--quick` for a smoke run); results go to benchmarks/results/.
"""
