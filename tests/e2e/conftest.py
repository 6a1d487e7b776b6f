"""End-to-end fixtures: the app under gunicorn with its own configuration file."""
from __future__ import annotations

import secrets

import pytest

AUTH_TOKEN = secrets.token_hex(16)

HOURS_ALWAYS_OPEN = "\n".join(
    f'{day} = ["00:00-24:00"]' for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
)


SIP_TARGET = "sip:1001@pbx.example.org;transport=tls"
SIP_LOGIN = ("helpdesk-e2e", secrets.token_hex(8))


def write_config(path, routing_mode: str = "dial", ivr: bool = True, screen_calls: bool = False,
                 sip: bool = False) -> str:
    """The test desk's configuration; with `sip`, the ring group rings a desk phone's SIP address too."""
    targets = '"client:agent-1", "client:agent-2", "+447700900001"' + (f', "{SIP_TARGET}"' if sip else "")
    path.write_text(f"""
[helpdesk]
nation = "england-and-wales"
# Open on bank holidays too, so the tests run the same on Christmas Day.
bank_holidays = false

[hours]
{HOURS_ALWAYS_OPEN}

[routing]
mode = "{routing_mode}"
dial_targets = [{targets}]
dial_timeout_seconds = 45
screen_calls = {"true" if screen_calls else "false"}

[ivr]
enabled = {"true" if ivr else "false"}

[webhooks]
spool_dir = "{path.parent / 'spool'}"
""")
    return str(path)


@pytest.fixture
def app_env():
    return {"SECRET_KEY": secrets.token_hex(16), "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
