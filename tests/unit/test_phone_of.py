"""Which phone a leg's endpoint rings, for "Answered by" (helpdesk.pages.taken_by.phone_of)."""
from __future__ import annotations

import pytest

from helpdesk.pages.taken_by import phone_of


@pytest.mark.parametrize(("endpoint", "phone"), [
    ("+447700900123", "+447700900123"),
    (" Client:Alice ", "client:alice"),
    ("sip:+447700900123@pbx.example.org", "+447700900123"),
    ("SIP:+447700900123@PBX.example.org;transport=tls", "+447700900123"),
    ("sip:+447700900123@", "+447700900123"),
    # Not a number in international format before the @: the address without parameters or headers.
    ("sip:1001@pbx.example.org", "sip:1001@pbx.example.org"),
    ("SIP:1001@PBX.example.org;transport=tls", "sip:1001@pbx.example.org"),
    ("sip:1001@pbx.example.org:5061;transport=tls?X-Team=a", "sip:1001@pbx.example.org:5061"),
    ("sip:1001@pbx.example.org?x-team=a;b", "sip:1001@pbx.example.org"),
    ("sip:1001@;transport=tls", "sip:1001@"),
    ("sip:07700900123@pbx.example.org", "sip:07700900123@pbx.example.org"),
    ("sip:+44 7700 900123@pbx.example.org", "sip:+44 7700 900123@pbx.example.org"),
    ("sip:+@pbx.example.org", "sip:+@pbx.example.org"),
    ("sip:+٤٤٧٧٠٠٩٠٠١٢٣@pbx.example.org", "sip:+٤٤٧٧٠٠٩٠٠١٢٣@pbx.example.org"),  # Arabic-Indic digits
    ("sip:+447700900123", "sip:+447700900123"),  # no host: not a SIP address Twilio dials
    ("sips:+447700900123@pbx.example.org", "sips:+447700900123@pbx.example.org"),
])
def test_a_sip_address_rings_the_number_in_its_user_part_and_anything_else_itself(endpoint, phone):
    assert phone_of(endpoint) == phone
