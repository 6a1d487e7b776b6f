"""Grafana dashboards for the help desk, generated as JSON by `python -m metrics.dashboards.build`."""
