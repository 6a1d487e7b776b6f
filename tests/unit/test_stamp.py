"""helpdesk.pages.stamp: a part of a page rendered once, filled in for each row as Jinja renders it."""
from __future__ import annotations

import pytest
from flask import Flask, render_template

from helpdesk.pages.stamp import Stamp

ROW = """<details id="{{ key }}-panel"{% if open %} open{% endif %}>
  <summary>Log an attempt<span class="visually-hidden"> for {{ reference }}</span></summary>
  <form method="post" action="{{ href }}"><input type="hidden" name="csrf_token" value="{{ token }}">
  {%- for value, label in choices.items() %}
    <input type="radio" id="{{ key }}-{{ value }}" name="outcome" value="{{ value }}"><label for="{{ key }}-{{ value }}">{{ label }}</label>
  {%- endfor %}
  </form>
</details>
"""
CONTEXT = {"open": False, "token": "tok&en", "choices": {"reached": "Reached the caller", "busy": "Busy <line>"}}
ROWS = [
    {"key": "callback-1", "reference": "HD-2026-000001", "href": "/queue/1/attempts"},
    {"key": "callback-22", "reference": "HD-2026-000022", "href": "/queue/22/attempts?show=400&only=mine&older=yes"},
    {"key": 'x"><script>', "reference": "<b>&amp;</b>", "href": "/q?a=1&b='2'"},
]


@pytest.fixture
def app(tmp_path):
    (tmp_path / "row.html").write_text(ROW, encoding="utf-8")
    (tmp_path / "changed.html").write_text('<p id="{{ key | upper }}">{{ reference }}</p>', encoding="utf-8")
    return Flask(__name__, template_folder=str(tmp_path))


def test_a_filled_stamp_is_the_template_rendered_with_the_rows_values(app):
    with app.test_request_context("/"):
        stamp = Stamp("row.html", ("key", "reference", "href"), **CONTEXT)
        for row in ROWS:
            assert stamp.fill(**row) == render_template("row.html", **CONTEXT, **row)
        assert "&lt;script&gt;" in stamp.fill(**ROWS[2]) and "<script>" not in stamp.fill(**ROWS[2])


def test_a_stamp_wants_every_slot_and_no_other(app):
    with app.test_request_context("/"):
        stamp = Stamp("row.html", ("key", "reference", "href"), **CONTEXT)
        with pytest.raises(TypeError):
            stamp.fill(key="callback-1", reference="HD-2026-000001")
        with pytest.raises(TypeError):
            stamp.fill(**ROWS[0], note="")


def test_a_template_that_changes_a_slots_value_cannot_be_a_stamp(app):
    with app.test_request_context("/"):
        with pytest.raises(ValueError, match="changed.html"):
            Stamp("changed.html", ("key", "reference"))
