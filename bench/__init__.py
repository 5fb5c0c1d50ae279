"""Benchmarks (``make bench``); ``baselines.py`` holds the code they measure against."""
