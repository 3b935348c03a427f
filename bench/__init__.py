"""Benchmarks: the gateway's overhead against a direct upstream and against LiteLLM proxy (`python bench/run.py`)."""
