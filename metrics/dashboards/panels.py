"""Small builders for Grafana 11.6 dashboard JSON: panels, Prometheus targets, layout.

Plain dictionaries shaped by grafana-foundation-sdk's dashboard schema (schemaVersion 39+),
so the output validates against `dashboard.jsonschema.json` without any Grafana library.
Every panel reads from the `${datasource}` variable, so one file works with any Prometheus.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 39
GRAFANA_VERSION = "11.6.0"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NO_DATA = "No data"
RED, AMBER, GREEN, BLUE = "red", "orange", "green", "blue"


def target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False,
           fmt: str = "time_series", interval: str | None = None) -> dict:
    """One Prometheus query; instant queries show only the value now (no stale last value)."""
    query = {
        "datasource": DATASOURCE, "refId": ref, "expr": expr, "legendFormat": legend,
        "editorMode": "code", "range": not instant, "instant": instant, "format": fmt,
    }
    if interval:
        query["interval"] = interval
    return query


def thresholds(*steps: tuple[float, str]) -> dict:
    """Absolute thresholds: the first step is the base colour (its value is ignored by Grafana)."""
    return {"mode": "absolute", "steps": [{"value": value, "color": colour} for value, colour in steps]}


def field_config(unit: str = "short", *, steps: dict | None = None, minimum: float | None = None,
                 maximum: float | None = None, decimals: int | None = None, mappings: list | None = None,
                 custom: dict | None = None, overrides: list | None = None, colour: str | None = None) -> dict:
    """Field defaults; "No data" is spelt out so an absent series never reads as 0 % or 100 %."""
    defaults: dict = {"unit": unit, "noValue": NO_DATA, "thresholds": steps or thresholds((0, BLUE))}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    defaults["mappings"] = mappings or []
    defaults["color"] = {"mode": colour or "thresholds"}
    if custom:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": overrides or []}


def value_text(value: str, text: str, colour: str) -> dict:
    """A value mapping: show `value` as `text` in `colour`."""
    return {"type": "value", "options": {value: {"text": text, "color": colour}}}


def _reduce(calcs: str = "lastNotNull") -> dict:
    return {"values": False, "calcs": [calcs], "fields": ""}


def stat(title: str, targets: list[dict], fields: dict, *, text_mode: str = "value",
         graph: bool = False) -> dict:
    """A single big number coloured by its thresholds."""
    return {
        "type": "stat", "title": title, "targets": targets, "fieldConfig": fields,
        "options": {"reduceOptions": _reduce(), "colorMode": "background" if not graph else "value",
                    "graphMode": "area" if graph else "none", "textMode": text_mode, "justifyMode": "auto",
                    "orientation": "auto", "wideLayout": True, "showPercentChange": False},
    }


def bar_gauge(title: str, targets: list[dict], fields: dict,
              orientation: str = "horizontal") -> dict:
    """Bars side by side, one per series: counts per outcome, per ring, per result."""
    return {
        "type": "bargauge", "title": title, "targets": targets, "fieldConfig": fields,
        "options": {"reduceOptions": _reduce(), "orientation": orientation, "displayMode": "basic",
                    "valueMode": "color", "showUnfilled": True, "namePlacement": "auto", "sizing": "auto",
                    "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300},
    }


def time_series(title: str, targets: list[dict], fields: dict, *, bars: bool = False,
                stacked: bool = False) -> dict:
    """A graph over the dashboard's time range (bars for counts per hour)."""
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 80 if bars else 10,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
              "axisSoftMin": 0, "thresholdsStyle": {"mode": "off"}}
    fields["defaults"].setdefault("custom", {}).update(custom)
    fields["defaults"]["color"] = {"mode": "palette-classic"}
    return {
        "type": "timeseries", "title": title, "targets": targets,
        "fieldConfig": fields,
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
    }


def heatmap(title: str, targets: list[dict], fields: dict) -> dict:
    """Histogram buckets over time: how long callers waited, hour by hour."""
    return {
        "type": "heatmap", "title": title, "targets": targets, "fieldConfig": fields,
        "options": {"calculate": False, "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges",
                                                                  "steps": 64, "exponent": 0.5, "fill": "dark-orange",
                                                                  "scale": "exponential", "reverse": False},
                    "yAxis": {"axisPlacement": "left", "unit": "s"}, "rowsFrame": {"layout": "le"},
                    "legend": {"show": True}, "tooltip": {"mode": "single", "yHistogram": True},
                    "cellValues": {"unit": "short"}, "showValue": "never", "filterValues": {"le": 1e-9}},
    }


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping and starting rows."""

    panels: list[dict] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0

    def row(self, title: str) -> None:
        """A full-width section heading."""
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1, "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def add(self, panel: dict, width: int, height: int) -> None:
        if self.x + width > 24:
            self._newline()
        panel = {"id": len(self.panels) + 1, "datasource": DATASOURCE, "pluginVersion": GRAFANA_VERSION,
                 **panel, "gridPos": {"h": height, "w": width, "x": self.x, "y": self.y}}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0


def datasource_variable() -> dict:
    """The `datasource` variable: pick any Prometheus data source when importing."""
    return {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
            "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0, "refresh": 1,
            "regex": "", "skipUrlSync": False, "multi": False, "includeAll": False, "options": []}


# A mark where the database was put back to an older backup (helpdesk db after-restore): the
# business counters went back there, so an increase() over a range that spans it counts the
# lost window twice (README, "After a restore").
RESTORED = {
    "name": "Database restored from a backup", "datasource": DATASOURCE, "enable": True, "hide": False,
    "iconColor": RED, "expr": "changes(helpdesk_database_restored_timestamp_seconds[5m]) > 0",
}


def dashboard(uid: str, title: str, description: str, layout: Layout, *, time_from: str = "now/d",
              links: list[dict] | None = None) -> dict:
    """The whole dashboard: UK time, refreshed every minute, today by default."""
    return {
        "uid": uid, "title": title, "tags": ["helpdesk", "sla"],
        "timezone": "Europe/London", "weekStart": "monday", "editable": True, "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"}, "refresh": "1m", "schemaVersion": SCHEMA_VERSION,
        "version": 1, "fiscalYearStartMonth": 0, "liveNow": False,
        "timepicker": {"refresh_intervals": ["30s", "1m", "5m", "15m"]},
        "templating": {"list": [datasource_variable()]},
        "annotations": {"list": [{
            "name": "Annotations & Alerts", "builtIn": 1, "type": "dashboard", "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        }, RESTORED]},
        "links": links or [],
        "panels": layout.panels,
    }


def dashboard_links() -> list[dict]:
    """Links to the other help-desk dashboards (by tag), keeping the chosen time range."""
    return [{"title": "Help desk", "type": "dashboards", "tags": ["helpdesk"], "asDropdown": True,
             "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
             "tooltip": "", "url": ""}]


def panel_queries(board: dict):
    """(panel title, target) for every query of every panel, rows included."""
    for panel in board["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for query in inner.get("targets", []):
                yield inner.get("title", ""), query


def annotation_queries(board: dict):
    """(name, query) for each annotation that asks Prometheus (not Grafana's own)."""
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["name"], annotation


def concrete(expr: str, *, time_range: str = "1h", interval: str = "1m") -> str:
    """A panel's PromQL with Grafana's macros replaced, to run it outside Grafana (promtool, the HTTP API)."""
    for macro, value in (("$__rate_interval", interval), ("$__interval", interval), ("$__range", time_range)):
        expr = expr.replace(macro, value)
    return expr
