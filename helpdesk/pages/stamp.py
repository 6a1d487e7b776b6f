"""Part of a page rendered once and filled in for each row it is repeated for.

The agents' page repeats the same two forms for each of up to 200 callbacks, differing only in
a few values (the callback's id in the fields' ids, its reference, the forms' addresses). Jinja
took about 80 to 100 µs to render them for each callback, 15 to 20 ms of the page; filled in,
they take about 12 µs. A row that needs anything more (what an agent typed, put back after a
refusal) renders the template itself.
"""
from __future__ import annotations

import re

from flask import render_template
from markupsafe import Markup, escape

# Put in the rendering where each slot goes: nothing a page shows has this character.
_MARK = "\x1f"


class Stamp:
    """`template` rendered with `context`, and each of `slots` marked, to be filled in by `fill`.

    The template may only write a slot out as it is: one changed (a filter) is refused here, but
    one tested (`{% if key %}`) would be judged by its mark, not by each row's value.
    """

    def __init__(self, template: str, slots: tuple[str, ...], **context):
        marked = render_template(template, **context, **{name: f"{_MARK}{name}{_MARK}" for name in slots})
        # Literal text and slot names in turn: "text", "key", "text", "reference", ..., "text".
        self.pieces = re.split(f"{_MARK}({'|'.join(map(re.escape, slots))}){_MARK}", marked)
        if _MARK in "".join(self.pieces[::2]):
            raise ValueError(f"{template}: a slot was changed on its way into the markup")
        self.slots = slots

    def fill(self, **values: object) -> Markup:
        """The markup with each slot's value, escaped, where the template put it."""
        if values.keys() != set(self.slots):
            raise TypeError(f"a stamp needs exactly {', '.join(self.slots)}")
        escaped = {name: escape(value) for name, value in values.items()}
        return Markup("".join(piece if n % 2 == 0 else escaped[piece] for n, piece in enumerate(self.pieces)))
