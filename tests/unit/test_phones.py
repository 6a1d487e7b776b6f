"""Phone numbers: one rule for international format, withheld callers and what may be shown."""
import pytest

from helpdesk.phones import is_e164, is_phone_number, is_withheld, number_ending


@pytest.mark.parametrize("number", ["+447700900123", "+14158675309", "+4412345"])
def test_international_numbers_are_accepted(number):
    assert is_e164(number)


@pytest.mark.parametrize("number", [None, "", "07700 900123", "+44 7700 900123", "+047700900123", "+447700900123\n",
                                    "client:agent-1", "+4412",
                                    "+44\u0667\u0667\u0660\u0660\u0669\u0660\u0660\u0661\u0662\u0663"])  # Arabic-Indic
def test_anything_else_is_not_an_international_number(number):
    assert not is_e164(number)


@pytest.mark.parametrize("number, callable", [
    ("+447700900123", True), ("+441134960000", True), ("+44800123456", True),  # 10 and 9 digits after 44
    ("+4411420", False), ("+44770090012345", False), ("+14158675309", True), ("07700 900123", False), (None, False),
])
def test_a_number_in_the_configuration_must_be_whole(number, callable):
    assert is_phone_number(number) is callable


@pytest.mark.parametrize("number", [None, "", "anonymous", " Restricted ", "+266696687"])
def test_withheld_numbers_are_recognised(number):
    assert is_withheld(number) and number_ending(number) is None


def test_only_the_last_three_digits_of_a_long_enough_number_are_shown():
    assert number_ending("+447700900123") == "123"
    assert number_ending("123456") is None
    assert not is_withheld("+447700900123")


@pytest.mark.parametrize("number, ending", [("1234567", "567"), ("+123456789", "789"), ("+44 1234 5678", "678")])
def test_a_number_of_seven_digits_or_more_shows_its_last_three(number, ending):
    # Six digits or fewer would be mostly given away by three of them; seven are not.
    assert number_ending(number) == ending


@pytest.mark.parametrize("typed, number", [
    ("07700 900123", "+447700900123"), ("07700-900-123", "+447700900123"), ("+44 (0)7700 900123", "+447700900123"),
    ("0044 7700 900123", "+447700900123"), ("+447700900123", "+447700900123"), ("(020) 7946 0000", "+442079460000"),
    ("+1 415 867 5309", "+14158675309"), ("123", None), ("call me", None), ("", None), (None, None),
    ("+44 7700 900123 ext 2", None), ("0114 20", None), ("+44 7700 900 1234 5", None), ("0114 496 0000", "+441144960000"),
])
def test_a_number_as_people_type_it_is_put_in_international_format(typed, number):
    from helpdesk.phones import international

    assert international(typed) == number


@pytest.mark.parametrize("typed, address", [
    ("sip:1001@pbx.example.org", "sip:1001@pbx.example.org"),
    (" SIP:1001@PBX.Example.org ", "sip:1001@pbx.example.org"),  # scheme and host compare in any case
    ("sip:Alice.Smith@pbx.example.org", "sip:Alice.Smith@pbx.example.org"),  # the user part as typed
    ("sip:1001@pbx.example.org:5061;transport=TLS", "sip:1001@pbx.example.org:5061;transport=TLS"),
    ("sip:+447700900123@10.0.0.5", "sip:+447700900123@10.0.0.5"),
    ("sip:1001@[2001:db8::1]", "sip:1001@[2001:db8::1]"),
    ("sip:1001@pbx.example.org?X-Team=help-desk", "sip:1001@pbx.example.org?X-Team=help-desk"),
    ("sip:1001@", None), ("sip:@pbx.example.org", None), ("sip:1001", None), ("sips:1001@pbx.example.org", None),
    ("sip:10 01@pbx.example.org", None), ("sip:1001@pbx..example.org", None), ("sip:1001@-pbx.example.org", None),
    ("sip:1001@pbx.example.org:port", None), ("sip:١٠٠١@pbx.example.org", None), ("client:alice", None),
    ("07700 900123", None), ("", None), (None, None),
    ("sip:" + "1" * 110 + "@pbx.example.org", None),  # longer than a user's phone is kept
])
def test_a_sip_address_as_people_type_it_is_checked_and_its_scheme_and_host_put_in_lower_case(typed, address):
    from helpdesk.phones import sip_address

    assert sip_address(typed) == address
