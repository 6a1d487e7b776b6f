# make demo   - install, migrate demo.db, create a demo manager, run the app with simulated traffic
# make test   - the whole test suite (unit, integration on SQLite and PostgreSQL, end-to-end), on 3 processes
# make bench  - the benchmarks under bench/
# make constraints - pin every dependency at the newest versions pyproject.toml allows (config/constraints.txt)
# make clean  - remove build artefacts, caches and the demo database (distclean: also .venv, .demo.env)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALL_STAMP := .stamp-install
# The versions every dependency is installed at, here, in CI and by the README's production
# commands: what the tests ran against. `make constraints` moves them on, on purpose.
CONSTRAINTS := config/constraints.txt
PYTEST_ARGS ?=
# `make test` runs the tests on this many processes (pytest-xdist), each with its own servers
# (PostgreSQL, Prism, Chromium...). Three was the quickest on the 2-core machines: 6 min 50 s to
# 7 min against 7 to 8 min on two, 8 on four, and 12 to 14 serially, as the tests spend much of
# their time waiting. TEST_WORKERS=0 runs them serially, in this process.
TEST_WORKERS ?= 3

DEMO_HOST := 127.0.0.1
DEMO_PORT := 5000
DEMO_URL := http://$(DEMO_HOST):$(DEMO_PORT)
DEMO_DATABASE_URL := sqlite:///demo.db
DEMO_USER ?= manager
DEMO_AGENT ?= agent
DEMO_AGENT_PHONE ?= +447700900100
# The simulated agent has a login of its own, so the demo agent's "Claimed by you" is only theirs.
DEMO_SIM_AGENT ?= sim-agent
# Its phone is a desk phone on the provider's own phone system, which the ring group rings too.
DEMO_SIM_AGENT_PHONE ?= sip:1001@pbx.desk.example.org
DEMO_AUDITOR ?= auditor
DEMO_ADMIN ?= admin
DEMO_EMAILS ?= 40
DEMO_SMTP_PORT ?= 8025
DEMO_MAIL_DIR := demo-mail
DEMO_CALLS ?= 300
DEMO_RATE ?= 2
# Real time: each call's webhooks come as its events happen, so what agents do on the pages
# follows the calls (at speed 0 the simulator's clock ran minutes ahead of theirs). A call
# lasts about two minutes, so this many at once keep up with DEMO_RATE.
DEMO_SPEED ?= 1
DEMO_CONCURRENCY ?= 300
# Calls that rang while the app "could not be reached", before the demo: only in the
# simulator's stand-in for Twilio's call log (on this port), where the scheduler finds them.
DEMO_UNREACHED ?= 4
DEMO_TWILIO_API_PORT ?= 5099
# The help desk's number: the simulator's callers ring it, and "Call back now" calls from it,
# placed through the same stand-in, which plays them back to the app as Twilio would.
DEMO_DESK_NUMBER := +448001217479
# Share of callbacks the simulated agent leaves until they breach (the demo's window is 5 minutes).
DEMO_LATE_SHARE ?= 0.1
# Share of the simulated agent's attempts made with "Call back now" (its desk phone rings, through
# the simulator's stand-in for Twilio); the rest it logs by hand.
DEMO_CALL_BACK_NOW_SHARE ?= 0.3
# Share of those calls the agent's desk phone does not take (rung out, or its voicemail answers and
# presses nothing): the caller is not dialled, and the queue page says so.
DEMO_CALL_BACK_NOW_UNANSWERED ?= 0.15
DEMO_ENV := .demo.env
# config/demo.toml sends mail to port 8025; with another DEMO_SMTP_PORT the demo runs on a copy
# that says so, or the acknowledgements would go to whatever listens on 8025.
DEMO_CONFIG := $(if $(filter 8025,$(DEMO_SMTP_PORT)),config/demo.toml,.demo.toml)

.PHONY: help demo demo-secrets test bench clean distclean install constraints

help:
	@sed -n 's/^# \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

# ---------------------------------------------------------------- environment

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml or the pins changed (or the venv was recreated). A package
# installed at another version than its pin is moved to the pin.
$(INSTALL_STAMP): pyproject.toml $(CONSTRAINTS) $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]' -c $(CONSTRAINTS)
	touch $@

install: $(INSTALL_STAMP)

# Resolved afresh in a throw-away venv, so nothing installed here by hand gets pinned. Run it with
# the oldest Python the app supports (3.11): a package needed only there is pinned too. Then
# `make test`, and commit the file with the figures it moved.
CONSTRAINTS_VENV := .constraints-venv
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[test]'
	{ echo "# The versions of the app's dependencies and test tools that this version was tested with."; \
	  echo "# Install with them: pip install -c constraints.txt helpdesk_sla-X.Y.Z-py3-none-any.whl"; \
	  echo "# Written by \`make constraints\` on Python $$($(CONSTRAINTS_VENV)/bin/python -c 'import platform; print(platform.python_version())'); do not edit by hand."; \
	  $(CONSTRAINTS_VENV)/bin/python -m pip freeze --disable-pip-version-check --exclude-editable; \
	} > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	rm -rf $(CONSTRAINTS_VENV)

# Demo secrets: generated once, here, at demo time; git-ignored; reused by later demos. A key
# added in a later version of the demo is appended to an existing file.
# SIP_PASSWORD: the demo's phone system (played by the simulator) asks Twilio to log in.
DEMO_SECRETS := SECRET_KEY TWILIO_AUTH_TOKEN DEMO_MANAGER_PASSWORD DEMO_AGENT_PASSWORD \
	DEMO_AUDITOR_PASSWORD SENDGRID_INBOUND_SECRET DEMO_SIM_AGENT_PASSWORD DEMO_ADMIN_PASSWORD SIP_PASSWORD

demo-secrets:
	@umask 077; touch $(DEMO_ENV); \
	hex() { $(PYTHON) -c "import secrets; print(secrets.token_hex($$1))"; }; \
	grep -q '^TWILIO_ACCOUNT_SID=' $(DEMO_ENV) || echo "TWILIO_ACCOUNT_SID=AC$$(hex 16)" >> $(DEMO_ENV); \
	grep -q '^SIP_USERNAME=' $(DEMO_ENV) || echo "SIP_USERNAME=helpdesk-demo" >> $(DEMO_ENV); \
	for key in $(DEMO_SECRETS); do \
	  grep -q "^$$key=" $(DEMO_ENV) || { echo "$$key=$$(hex 16)" >> $(DEMO_ENV); echo "demo: wrote a new $$key to $(DEMO_ENV)"; }; \
	done

# ---------------------------------------------------------------- demo

# The app runs until Ctrl-C (or the make is sent SIGTERM): every process the demo started is
# stopped with it, the app too. The call simulator starts first, so its stand-in
# for Twilio's call log is there for the scheduler's first look, and places calls once the app
# answers /readyz; the simulators are stopped with the app.
demo: $(INSTALL_STAMP) demo-secrets
	@if [ '$(DEMO_CONFIG)' = .demo.toml ]; then \
	  sed 's/^port = 8025$$/port = $(DEMO_SMTP_PORT)/' config/demo.toml > .demo.toml; \
	  grep -q '^port = $(DEMO_SMTP_PORT)$$' .demo.toml || { echo "demo: could not set the mail port in .demo.toml" >&2; exit 1; }; \
	fi
	@set -a; . "$(abspath $(DEMO_ENV))"; set +a; \
	export PUBLIC_BASE_URL='$(DEMO_URL)' DATABASE_URL='$(DEMO_DATABASE_URL)' HELPDESK_CONFIG='$(DEMO_CONFIG)' \
	  TWILIO_API_BASE_URL='http://127.0.0.1:$(DEMO_TWILIO_API_PORT)' TWILIO_FROM_NUMBER='$(DEMO_DESK_NUMBER)'; \
	$(BIN)/helpdesk db upgrade; \
	if ! out=$$(HELPDESK_PASSWORD="$$DEMO_MANAGER_PASSWORD" $(BIN)/helpdesk users add '$(DEMO_USER)' --role manager --permanent 2>&1); then \
	  if grep -qi 'exist\|taken' <<<"$$out"; then echo "demo: user $(DEMO_USER) already exists, keeping it"; \
	  else echo "$$out" >&2; exit 1; fi; \
	else echo "$$out"; fi; \
	if ! out=$$(HELPDESK_PASSWORD="$$DEMO_AGENT_PASSWORD" $(BIN)/helpdesk users add '$(DEMO_AGENT)' \
	      --role agent --name 'Demo Agent' --phone '$(DEMO_AGENT_PHONE)' --email 'agent@desk.example.org' --permanent 2>&1); then \
	  if grep -qi 'exist\|taken' <<<"$$out"; then echo "demo: user $(DEMO_AGENT) already exists, keeping it"; \
	  else echo "$$out" >&2; exit 1; fi; \
	else echo "$$out"; fi; \
	if ! out=$$(HELPDESK_PASSWORD="$$DEMO_SIM_AGENT_PASSWORD" $(BIN)/helpdesk users add '$(DEMO_SIM_AGENT)' \
	      --role agent --name 'Simulated Agent' --phone '$(DEMO_SIM_AGENT_PHONE)' --permanent 2>&1); then \
	  if grep -qi 'exist\|taken' <<<"$$out"; then echo "demo: user $(DEMO_SIM_AGENT) already exists, keeping it"; \
	  else echo "$$out" >&2; exit 1; fi; \
	else echo "$$out"; fi; \
	if ! out=$$(HELPDESK_PASSWORD="$$DEMO_AUDITOR_PASSWORD" $(BIN)/helpdesk users add '$(DEMO_AUDITOR)' --role auditor --name 'DWP Auditor' --permanent 2>&1); then \
	  if grep -qi 'exist\|taken' <<<"$$out"; then echo "demo: user $(DEMO_AUDITOR) already exists, keeping it"; \
	  else echo "$$out" >&2; exit 1; fi; \
	else echo "$$out"; fi; \
	if ! out=$$(HELPDESK_PASSWORD="$$DEMO_ADMIN_PASSWORD" $(BIN)/helpdesk users add '$(DEMO_ADMIN)' --role admin --name 'Demo Administrator' --email 'admin@desk.example.org' --permanent 2>&1); then \
	  if grep -qi 'exist\|taken' <<<"$$out"; then echo "demo: user $(DEMO_ADMIN) already exists, keeping it"; \
	  else echo "$$out" >&2; exit 1; fi; \
	else echo "$$out"; fi; \
	mkdir -p $(DEMO_MAIL_DIR)/tmp $(DEMO_MAIL_DIR)/new $(DEMO_MAIL_DIR)/cur; \
	$(BIN)/python -m aiosmtpd -n -l 127.0.0.1:$(DEMO_SMTP_PORT) -c aiosmtpd.handlers.Mailbox $(DEMO_MAIL_DIR) & \
	mailserver=$$!; \
	listening() { $(BIN)/python -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
	  '$(DEMO_TWILIO_API_PORT)' 2>/dev/null; }; \
	if listening; then \
	  echo "demo: port $(DEMO_TWILIO_API_PORT) is taken, so the simulator cannot serve Twilio's call log there;" \
	    "make demo DEMO_TWILIO_API_PORT=5199 moves it" >&2; kill $$mailserver; exit 1; fi; \
	$(BIN)/helpdesk simulate --url '$(DEMO_URL)' --calls $(DEMO_CALLS) --rate $(DEMO_RATE) --wait 60 \
	  --speed $(DEMO_SPEED) --concurrency $(DEMO_CONCURRENCY) \
	  --call-log-port $(DEMO_TWILIO_API_PORT) --unreached $(DEMO_UNREACHED) --sip-login-required \
	  --call-back-now-unanswered-rate $(DEMO_CALL_BACK_NOW_UNANSWERED) & \
	simulator=$$!; \
	trap 'kill $$simulator $$mailserver 2>/dev/null || true' EXIT; \
	served=; \
	for _ in $$(seq 1 60); do \
	  kill -0 $$simulator 2>/dev/null || break; \
	  if listening; then served=1; break; fi; \
	  sleep 0.25; \
	done; \
	if [ -z "$$served" ]; then \
	  echo "demo: the simulator is not serving Twilio's call log on port $(DEMO_TWILIO_API_PORT) (see above);" \
	    "make demo DEMO_TWILIO_API_PORT=5199 moves it" >&2; exit 1; fi; \
	( ready=; \
	  for _ in $$(seq 1 120); do \
	    if $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
	         '$(DEMO_URL)/readyz' 2>/dev/null; then ready=1; break; fi; \
	    sleep 0.5; \
	  done; \
	  if [ -z "$$ready" ]; then echo "demo: the app did not answer /readyz within 60 s; no simulated traffic" >&2; exit 1; fi; \
	  echo; \
	  echo "================================================================"; \
	  echo " Help-desk SLA monitor demo: $(DEMO_URL)/login"; \
	  echo " manager login: $(DEMO_USER) / $$DEMO_MANAGER_PASSWORD   (Calls: /calls)"; \
	  echo " agent login:   $(DEMO_AGENT) / $$DEMO_AGENT_PASSWORD   (Callback queue: /queue)"; \
	  echo " auditor login: $(DEMO_AUDITOR) / $$DEMO_AUDITOR_PASSWORD   (Evidence: /evidence)"; \
	  echo " admin login:   $(DEMO_ADMIN) / $$DEMO_ADMIN_PASSWORD   (Users: /admin/users)"; \
	  echo " Prometheus metrics: $(DEMO_URL)/metrics   Service levels: /service-levels (manager)"; \
	  echo " Email acknowledgements, and links from Forgotten your password? (for $(DEMO_AGENT) and $(DEMO_ADMIN)), land in"; \
	  echo " ./$(DEMO_MAIL_DIR) (a local mail server on port $(DEMO_SMTP_PORT))"; \
	  echo " Two-step sign-in, with any authenticator app: Two-step sign-in at the top of each page"; \
	  echo " Packs for scripts: an access token from /account/tokens (auditor) downloads them from /api/evidence"; \
	  echo " (secrets in $(DEMO_ENV); feeding $(DEMO_EMAILS) emails and $(DEMO_CALLS) simulated calls at $(DEMO_RATE)/s;"; \
	  echo "  a simulated agent, $(DEMO_SIM_AGENT), works the queue; callbacks are due in 5 minutes in the demo;"; \
	  echo "  $(DEMO_UNREACHED) calls rang while the app was down: the scheduler finds them in Twilio's call log"; \
	  echo "  (played by the simulator on port $(DEMO_TWILIO_API_PORT)) when it starts;"; \
	  echo "  Ctrl-C stops)"; \
	  echo "================================================================"; \
	  echo; \
	  exec $(BIN)/helpdesk email simulate --url '$(DEMO_URL)' --count $(DEMO_EMAILS) \
	) & \
	emails=$$!; \
	( for _ in $$(seq 1 120); do \
	    $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
	      '$(DEMO_URL)/readyz' 2>/dev/null && break; \
	    sleep 0.5; \
	  done; \
	  HELPDESK_PASSWORD="$$DEMO_SIM_AGENT_PASSWORD" exec $(BIN)/helpdesk simulate-agent --url '$(DEMO_URL)' \
	    --username '$(DEMO_SIM_AGENT)' --late-share $(DEMO_LATE_SHARE) \
	    --call-back-now-share $(DEMO_CALL_BACK_NOW_SHARE) \
	) & \
	agent=$$!; \
	echo "demo: starting the app on $(DEMO_URL) (database $(DEMO_DATABASE_URL))"; \
	$(BIN)/helpdesk run --host $(DEMO_HOST) --port $(DEMO_PORT) & \
	app=$$!; \
	trap 'kill $$app $$simulator $$emails $$agent $$mailserver 2>/dev/null || true' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	wait $$app

# ---------------------------------------------------------------- tests and benchmarks

test: $(INSTALL_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Every bench/*.py that is a script (has a __main__ block); the others are its helper modules.
bench: $(INSTALL_STAMP)
	shopt -s nullglob; ran=0; \
	for script in bench/*.py; do \
	  grep -q '__name__ == .__main__.' "$$script" || continue; \
	  echo "== $$script"; \
	  $(BIN)/python "$$script"; \
	  ran=1; \
	done; \
	[ "$$ran" = 1 ] || echo "bench: no benchmark scripts in bench/"

# ---------------------------------------------------------------- cleaning

clean:
	rm -rf build dist .pytest_cache .hypothesis .coverage htmlcov *.egg-info $(INSTALL_STAMP)
	rm -f demo.db demo.db-wal demo.db-shm demo.db.lock .demo.toml
	rm -rf $(DEMO_MAIL_DIR) spool
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(DEMO_ENV)
