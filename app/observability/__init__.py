"""Metrics (Prometheus), JSON logs and traces (OpenTelemetry): see README, "Operations"."""
