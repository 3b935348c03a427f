"""Observability: Prometheus metrics and OpenTelemetry spans for every call that passes the pipeline."""
