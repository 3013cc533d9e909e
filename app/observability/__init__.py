"""Metrics (Prometheus), JSON logs and traces (OpenTelemetry): see docs/operations.md."""
