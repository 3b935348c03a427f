"""Offline eval suites: suites in `evals/` run through the same pipeline as production (in process or over HTTP),
assertions on what the gateway answered and decided, baselines, stored runs and the promotion gate."""
