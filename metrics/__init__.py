"""Compliance figures, the Prometheus collector and /metrics, dashboards and alert rules."""
