"""References kept on one line in the pages (helpdesk.pages.format.unbroken_references)."""
from markupsafe import Markup

from helpdesk.pages.format import unbroken_references


def test_each_reference_in_a_line_is_wrapped_to_stay_whole():
    assert unbroken_references("Breached: HD-2026-000263") == Markup(
        'Breached: <span class="reference">HD-2026-000263</span>')
    assert unbroken_references("HD-2026-000001 and HD-2027-1234567") == Markup(
        '<span class="reference">HD-2026-000001</span> and <span class="reference">HD-2027-1234567</span>')


def test_the_rest_is_escaped_and_what_only_looks_like_a_reference_is_left_alone():
    assert unbroken_references('<b onclick="x">HD-2026-000263</b>') == Markup(
        '&lt;b onclick=&#34;x&#34;&gt;<span class="reference">HD-2026-000263</span>&lt;/b&gt;')
    for text in ("XHD-2026-000263", "HD-26-000263", "HD-2026-12345", "HD-2026-0002631x", "no reference"):
        assert unbroken_references(text) == Markup.escape(text)
