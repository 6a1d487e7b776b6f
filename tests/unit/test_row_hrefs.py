"""helpdesk.web.RowHrefs: the addresses of a list's row actions, built with one url_for for the list."""
from __future__ import annotations

import pytest
from flask import Flask, url_for

from helpdesk.web import MAX_ROW_ID, RowHrefs, RowId


@pytest.fixture
def app():
    app = Flask(__name__)
    app.url_map.converters["id"] = RowId
    app.add_url_rule("/queue/<id:callback_id>/claim", "claim", methods=["POST"])
    app.add_url_rule("/queue/calls/<call_sid>/concluded", "concluded", methods=["POST"])
    app.add_url_rule("/queue/<id:callback_id>/notes/<id:note_id>", "note")
    app.add_url_rule("/queue", "queue")
    return app


PAGE_ARGS = [{}, {"show": 400}, {"show": 400, "only": "mine", "older": "yes"}]


@pytest.mark.parametrize("args", PAGE_ARGS)
@pytest.mark.parametrize("script_root", ["", "/helpdesk"])
def test_each_address_is_the_one_url_for_builds(app, args, script_root):
    with app.test_request_context("/queue", base_url=f"http://localhost{script_root}"):
        claim, concluded = RowHrefs("claim", **args), RowHrefs("concluded", **args)
        for callback_id in (0, 1, 7, 400, 2000, 98765432, MAX_ROW_ID):
            assert claim(callback_id) == url_for("claim", callback_id=callback_id, **args)
        for call_sid in ("CA" + "0123456789abcdef" * 2, "CAfeed", "call_1.2~3-4"):
            assert concluded(call_sid) == url_for("concluded", call_sid=call_sid, **args)


@pytest.mark.parametrize("value", ["CA 12", "CA/12", "ça", "CA?x=1&y", "", True, -1])
def test_any_other_value_goes_through_url_for(app, value):
    route = "claim" if not isinstance(value, str) else "concluded"
    key = "callback_id" if route == "claim" else "call_sid"
    with app.test_request_context("/queue"):
        assert RowHrefs(route, older="yes")(value) == url_for(route, **{key: value}, older="yes")


def test_a_route_needs_exactly_one_value_from_the_row(app):
    with app.test_request_context("/queue"):
        with pytest.raises(ValueError):
            RowHrefs("note")  # two
        with pytest.raises(ValueError):
            RowHrefs("queue")  # none
        assert RowHrefs("note", note_id=3)(5) == "/queue/5/notes/3"

