"""`helpdesk twilio-numbers`: whether the help desk's Twilio numbers send their calls to the app,
and --fix; against a small local server, and against Prism serving Twilio's own OpenAPI
description for the requests themselves."""
from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from helpdesk.cli import main
from helpdesk.voice.numbers import TwilioNumbers, differences, wanted_settings

pytestmark = pytest.mark.usefixtures("local_no_proxy")

ACCOUNT = "AC" + "0" * 32
NUMBER = "+441144960000"
SID = "PN" + "1" * 32
BASE = "https://helpdesk.example.org"
RIGHT = {"voice_url": f"{BASE}/twilio/voice/incoming", "voice_method": "POST",
         "voice_fallback_url": f"{BASE}/twilio/voice/fallback", "voice_fallback_method": "POST",
         "status_callback": f"{BASE}/twilio/voice/status", "status_callback_method": "POST"}
LIST = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json"
ONE = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{SID}.json"


def record(**fields) -> dict:
    return {"sid": SID, "account_sid": ACCOUNT, "phone_number": NUMBER, "voice_application_sid": "",
            "trunk_sid": None, **RIGHT, **fields}


def listing(*records) -> str:
    return json.dumps({"incoming_phone_numbers": list(records), "page": 0, "page_size": 20, "uri": LIST,
                       "next_page_uri": None})


def run(api_url: str, *args: str, **env):
    environ = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": "token", "PUBLIC_BASE_URL": BASE + "/",
               "TWILIO_API_BASE_URL": api_url, **env}
    return CliRunner().invoke(main, ["twilio-numbers", *args], env=environ)


class Account:
    """The stub's answers: the number's record as Twilio holds it, changed by each update."""

    def __init__(self, stub, **fields):
        self.held = record(**fields)
        stub.route = self.answer
        self.stub = stub

    def answer(self, path: str):
        if path.startswith(LIST):
            return 200, listing(self.held)
        if path == ONE:
            sent = {key: values[-1] for key, values in parse_qs(self.stub.bodies[-1]).items()}
            names = {"VoiceUrl": "voice_url", "VoiceMethod": "voice_method", "VoiceFallbackUrl": "voice_fallback_url",
                     "VoiceFallbackMethod": "voice_fallback_method", "StatusCallback": "status_callback",
                     "StatusCallbackMethod": "status_callback_method"}
            self.held.update({names[key]: value for key, value in sent.items()})
            return 200, json.dumps(self.held)
        return 404, "{}"


def test_a_number_pointed_elsewhere_is_reported_then_set_with_fix(stub):
    account = Account(stub, voice_url="https://old.example/voice", voice_fallback_url=None,
                      status_callback_method="GET")
    checked = run(stub.url, "0114 496 0000")
    assert checked.exit_code == 1, checked.output
    assert checked.output.splitlines() == [
        f"{NUMBER} ({SID}): 3 settings differ:",
        f"  A call comes in: POST https://old.example/voice; should be POST {BASE}/twilio/voice/incoming",
        f"  Primary handler fails: not set; should be POST {BASE}/twilio/voice/fallback",
        f"  Call status changes: GET {BASE}/twilio/voice/status; should be POST {BASE}/twilio/voice/status",
        "Run it again with --fix to set them.",
    ]
    assert stub.bodies == []  # looking changes nothing
    fixed = run(stub.url, NUMBER, "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output.splitlines() == [f"{NUMBER} ({SID}): set to send its calls to the app."]
    assert parse_qs(stub.bodies[-1]) == {
        "VoiceUrl": [RIGHT["voice_url"]], "VoiceMethod": ["POST"], "VoiceFallbackUrl": [RIGHT["voice_fallback_url"]],
        "VoiceFallbackMethod": ["POST"], "StatusCallback": [RIGHT["status_callback"]],
        "StatusCallbackMethod": ["POST"]}
    assert account.held == record()
    again = run(stub.url, NUMBER)
    assert (again.exit_code, again.output) == (0, f"{NUMBER} ({SID}): sends its calls to the app.\n")


def test_the_numbers_default_to_the_configurations_and_an_unknown_one_fails(stub, tmp_path):
    Account(stub)
    config = tmp_path / "helpdesk.toml"
    hours = '[hours]\nmonday = ["08:00-18:00"]\n'
    config.write_text(hours + f'[webhooks]\ntwilio_numbers = ["{NUMBER}", "+441144960001"]\n')
    result = run(stub.url, HELPDESK_CONFIG=str(config))
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"{NUMBER} ({SID}): sends its calls to the app.",
        "+441144960001: not a number of this Twilio account (TWILIO_ACCOUNT_SID).",
    ]
    config.write_text(hours)
    none = run(stub.url, HELPDESK_CONFIG=str(config))
    assert none.exit_code == 1 and "set [webhooks] twilio_numbers" in none.output


def test_a_twiml_app_on_the_number_is_reported_and_left_alone_by_fix(stub):
    Account(stub, voice_application_sid="AP" + "2" * 32, voice_url=None)
    result = run(stub.url, NUMBER, "--fix")
    assert result.exit_code == 1
    assert f"its calls go to the TwiML App AP{'2' * 32}, not to its Voice URL" in result.output
    assert stub.bodies == []


def test_refused_credentials_stop_the_run_and_say_so(stub):
    stub.status, stub.body = 401, json.dumps({"code": 20003, "message": "Authenticate", "status": 401})
    result = run(stub.url, NUMBER, "+441144960001")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{NUMBER}: stopped: Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.",
        "Not checked: +441144960001.",
    ]


@pytest.mark.parametrize(("args", "env", "message"), [
    (["0114 20"], {}, "'0114 20' is not a whole phone number"),
    ([NUMBER], {"PUBLIC_BASE_URL": ""}, "set PUBLIC_BASE_URL"),
    ([NUMBER], {"TWILIO_AUTH_TOKEN": ""}, "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
])
def test_what_is_missing_is_named(args, env, message):
    result = run("http://127.0.0.1:9", *args, **env)
    assert result.exit_code == 2 if args == ["0114 20"] else result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_the_requests_pass_twilios_own_description(prism):
    """Prism checks each request against Twilio's description: the look-up by number, and the
    update with every field and value --fix sends. (It answers with made-up records: the
    documented example of the list breaks the description's own response schema.)"""
    from tests.integration.test_call_lookup_prism import GeneratedAnswers

    class Generated(TwilioNumbers):
        http_client_class = GeneratedAnswers

    twilio = Generated(ACCOUNT, "token", api_base_url=prism.url)
    mark = prism.log_size()
    assert twilio.find(NUMBER) is None  # a made-up record has a made-up number
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert f"get {LIST}" in log
    assert "Request did not pass the validation rules" not in log, log
    mark = prism.log_size()
    updated = twilio.update(SID, NUMBER, wanted_settings(BASE))
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert f"post {ONE}" in log
    assert "Request did not pass the validation rules" not in log, log
    assert len(differences(updated, BASE)) == 3  # read as any answer is: made-up URLs all differ
    mark = prism.log_size()
    twilio.update(SID, NUMBER, wanted_settings(BASE, agents=True))  # an agents' number: its Voice URL only
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert "Request did not pass the validation rules" not in log, log


AGENTS = "+441144960099"
AGENTS_SID = "PN" + "9" * 32
AGENTS_RIGHT = {"voice_url": f"{BASE}/twilio/voice/agent-dequeue", "voice_method": "POST",
                "voice_fallback_url": "", "voice_fallback_method": "POST", "status_callback": "",
                "status_callback_method": "POST"}


class Numbers(Account):
    """The help desk's number as Account holds it, and an agents' number beside it."""

    def __init__(self, stub, **agents_fields):
        super().__init__(stub)
        self.agents = {**record(), "sid": AGENTS_SID, "phone_number": AGENTS, **AGENTS_RIGHT, **agents_fields}

    def answer(self, path: str):
        if path.startswith(LIST) and "PhoneNumber=%2B441144960099" in path:
            return 200, listing(self.agents)
        if path == ONE.replace(SID, AGENTS_SID):
            sent = {key: values[-1] for key, values in parse_qs(self.stub.bodies[-1]).items()}
            self.agents.update({{"VoiceUrl": "voice_url", "VoiceMethod": "voice_method"}[key]: value
                                for key, value in sent.items()})
            return 200, json.dumps(self.agents)
        return super().answer(path)


def queue_config(tmp_path, agents: str = f'agents_numbers = ["{AGENTS}"]') -> str:
    """A queue-mode configuration with the help desk's number, and `agents` in [routing]."""
    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\nmonday = ["08:00-18:00"]\n[routing]\nmode = "queue"\n{agents}\n'
                      f'[webhooks]\ntwilio_numbers = ["{NUMBER}"]\n')
    return str(config)


def test_an_agents_number_is_checked_for_the_agents_voice_url_and_no_other(stub, tmp_path):
    # Pointed at the help desk's URLs, as a number callers ring: an agent calling it would be
    # queued as a caller, and their call counted as one.
    numbers = Numbers(stub, **RIGHT)
    checked = run(stub.url, HELPDESK_CONFIG=queue_config(tmp_path))
    assert checked.exit_code == 1, checked.output
    assert checked.output.splitlines() == [
        f"{NUMBER} ({SID}): sends its calls to the app.",
        f"{AGENTS} ({AGENTS_SID}), an agents' number: 3 settings differ:",
        f"  A call comes in: POST {BASE}/twilio/voice/incoming; should be POST {BASE}/twilio/voice/agent-dequeue",
        f"  Primary handler fails: POST {BASE}/twilio/voice/fallback; should be not set",
        f"  Call status changes: POST {BASE}/twilio/voice/status; should be not set",
        "Run it again with --fix to set them.",
        "--fix does not remove a URL: remove each that should be not set in Twilio's console (the number's Voice "
        "configuration).",
    ]
    fixed = run(stub.url, "--fix", HELPDESK_CONFIG=queue_config(tmp_path))
    assert fixed.exit_code == 1, fixed.output
    assert parse_qs(stub.bodies[-1]) == {"VoiceUrl": [f"{BASE}/twilio/voice/agent-dequeue"], "VoiceMethod": ["POST"]}
    assert fixed.output.splitlines()[1:3] == [
        f"{AGENTS} ({AGENTS_SID}), an agents' number: set, and 2 settings to remove:",
        f"  Primary handler fails: POST {BASE}/twilio/voice/fallback; should be not set"]
    assert "Run it again with --fix" not in fixed.output
    numbers.agents.update(voice_fallback_url="", status_callback=None)  # removed in the console
    again = run(stub.url, AGENTS, HELPDESK_CONFIG=queue_config(tmp_path))  # named: still an agents' number
    assert (again.exit_code, again.output) == (
        0, f"{AGENTS} ({AGENTS_SID}), an agents' number: puts agents through to the callers waiting.\n")


def test_an_agents_number_with_only_a_status_callback_url_to_remove_is_not_set_by_fix(stub, tmp_path):
    Numbers(stub, status_callback=f"{BASE}/twilio/voice/status")
    fixed = run(stub.url, AGENTS, "--fix", HELPDESK_CONFIG=queue_config(tmp_path))
    assert fixed.exit_code == 1 and stub.bodies == []  # nothing --fix could set
    assert fixed.output.splitlines() == [
        f"{AGENTS} ({AGENTS_SID}), an agents' number: 1 setting differs:",
        f"  Call status changes: POST {BASE}/twilio/voice/status; should be not set",
        "--fix does not remove a URL: remove each that should be not set in Twilio's console (the number's Voice "
        "configuration).",
    ]


APP = "AP" + "3" * 32
APP_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Applications/{APP}.json"


class Apps(Account):
    """The help desk's number as Account holds it, and the agents' TwiML App (the Applications resource)."""

    def __init__(self, stub, **app_fields):
        super().__init__(stub)
        self.app = {"sid": APP, "account_sid": ACCOUNT, "friendly_name": "Agents' softphone", **AGENTS_RIGHT,
                    **app_fields}
        self.posted = 0  # the stub's POST bodies seen so far: one more means this request is a POST

    def answer(self, path: str):
        if path == APP_PATH:
            if len(self.stub.bodies) > self.posted:
                self.posted = len(self.stub.bodies)
                sent = {key: values[-1] for key, values in parse_qs(self.stub.bodies[-1]).items()}
                self.app.update({{"VoiceUrl": "voice_url", "VoiceMethod": "voice_method"}[key]: value
                                 for key, value in sent.items()})
            return 200, json.dumps(self.app)
        return super().answer(path)


def test_the_agents_twiml_app_is_checked_for_the_agents_voice_url_and_no_other(stub, tmp_path):
    # Given the help desk's URLs: an agent's call from their softphone would be queued as a
    # caller's, and its status callback counted as a call to the help desk.
    apps = Apps(stub, **RIGHT)
    config = queue_config(tmp_path, f'agents_apps = ["{APP}"]')
    checked = run(stub.url, HELPDESK_CONFIG=config)
    assert checked.exit_code == 1, checked.output
    assert checked.output.splitlines() == [
        f"{NUMBER} ({SID}): sends its calls to the app.",
        f"{APP}, the agents' TwiML App: 3 settings differ:",
        f"  A call comes in: POST {BASE}/twilio/voice/incoming; should be POST {BASE}/twilio/voice/agent-dequeue",
        f"  Primary handler fails: POST {BASE}/twilio/voice/fallback; should be not set",
        f"  Call status changes: POST {BASE}/twilio/voice/status; should be not set",
        "Run it again with --fix to set them.",
        "--fix does not remove a URL: remove each that should be not set in Twilio's console (the TwiML App's "
        "Voice configuration).",
    ]
    fixed = run(stub.url, "--fix", HELPDESK_CONFIG=config)
    assert fixed.exit_code == 1, fixed.output
    assert stub.paths[-2:] == [APP_PATH, APP_PATH] and len(stub.bodies) == 1  # looked up, then set
    assert parse_qs(stub.bodies[-1]) == {"VoiceUrl": [f"{BASE}/twilio/voice/agent-dequeue"], "VoiceMethod": ["POST"]}
    assert fixed.output.splitlines()[1] == f"{APP}, the agents' TwiML App: set, and 2 settings to remove:"
    apps.app.update(voice_fallback_url="", status_callback=None)  # removed in the console
    again = run(stub.url, APP, HELPDESK_CONFIG=config)  # named by its SID
    assert (again.exit_code, again.output) == (
        0, f"{APP}, the agents' TwiML App: puts agents through to the callers waiting.\n")


def test_a_twiml_app_the_account_does_not_have_is_said_and_fails(stub):
    Account(stub)  # answers 404 for any TwiML App
    result = run(stub.url, "AP" + "4" * 32)
    assert (result.exit_code, result.output) == (
        1, f"AP{'4' * 32}: not a TwiML App of this Twilio account (TWILIO_ACCOUNT_SID).\n")


def test_a_sid_that_is_not_a_twiml_apps_is_refused_by_name():
    result = run("http://127.0.0.1:9", "AP123")
    assert result.exit_code == 2 and "'AP123' is not a whole phone number, or a TwiML App's SID" in result.output


def test_the_twiml_app_requests_pass_twilios_own_description(prism):
    from tests.integration.test_call_lookup_prism import GeneratedAnswers

    class Generated(TwilioNumbers):
        http_client_class = GeneratedAnswers

    twilio = Generated(ACCOUNT, "token", api_base_url=prism.url)
    for ask in (lambda: twilio.find_app(APP), lambda: twilio.update_app(APP, wanted_settings(BASE, agents=True))):
        mark = prism.log_size()
        found = ask()
        log = prism.wait_for_log('Responding with "200"', since=mark)
        assert APP_PATH in log and "Request did not pass the validation rules" not in log, log
        assert len(differences(found, BASE, agents=True)) >= 1  # read as any answer is: a made-up URL differs
