"""Observability: Prometheus metrics and OpenTelemetry spans for every call that passes the pipeline, and the
operator log (a line per request, admin change and refused key)."""
