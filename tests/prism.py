"""A Stoplight Prism mock of Twilio's REST API (2010-04-01) for integration tests.

Import it as ``prism`` (``tests/`` is on ``sys.path``):

    from prism import PrismServer, bracket_list_fields

* ``PrismServer``: ``node_modules/.bin/prism mock --errors`` on a free port of 127.0.0.1, serving
  Twilio's own OpenAPI description (``shared/reference/twilio-oai/twilio_api_v2010.json``, beside
  the repository). Prism validates every request against the description: a request that breaks
  it gets a 422 problem+json whose ``validation`` list says why. With ``--errors`` a response that
  breaks it would become a 500, so a 201 means both sides passed. Responses are the documented
  examples (CallSid ``CAaaaa...``); the ``Prefer: dynamic=true`` request header asks for
  generated ones instead, ``Prefer: code=NNN`` for another documented status (the Calls resource
  documents only 201, so there are no error examples to ask for).
* ``bracket_list_fields(data)``: Prism 5 does not read repeated form keys
  (``StatusCallbackEvent=initiated&StatusCallbackEvent=ringing``, which twilio-python sends and
  Twilio accepts) as an array: it answers 422 "must be array"
  (https://github.com/stoplightio/prism/issues/2473). It reads ``StatusCallbackEvent[]=...``.

Missing Node.js, Prism (``npm ci``) or the description: skip locally, fail under ``CI=true``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from servers import HOST, free_port, skip_or_fail, wait_for_port

REPO = Path(__file__).resolve().parents[1]
PRISM = REPO / "node_modules" / ".bin" / "prism"
# CI clones the repository beside `shared/`, as /work/main sits beside /work/shared.
TWILIO_SPEC = Path(__file__).resolve().parents[2] / "shared" / "reference" / "twilio-oai" / "twilio_api_v2010.json"
START_TIMEOUT = 60.0  # the description is 1.8 MB; Prism reads it before it listens


def bracket_list_fields(data: dict | None) -> dict | None:
    """Form data with list values sent as ``Name[]`` keys, the only array form Prism 5 reads."""
    if not data:
        return data
    return {f"{key}[]" if isinstance(value, (list, tuple)) else key: value for key, value in data.items()}


class PrismServer:
    """``prism mock`` on 127.0.0.1 (a context manager, or start()/stop()); output kept in a log file."""

    def __init__(self, spec: Path = TWILIO_SPEC, prism: Path = PRISM, host: str = HOST):
        self.spec, self.prism, self.host = Path(spec), Path(prism), host
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        """Base URL to use instead of https://api.twilio.com."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "PrismServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, timeout: float = START_TIMEOUT, attempts: int = 3) -> "PrismServer":
        if self.process is not None:
            return self
        if shutil.which("node") is None:
            skip_or_fail("`node` not found on PATH; install Node.js 18 or later, then run npm ci")
        if not (self.prism.is_file() and os.access(self.prism, os.X_OK)):
            skip_or_fail(f"Prism not found at {self.prism}; run npm ci")
        if not self.spec.is_file():
            skip_or_fail(f"Twilio's OpenAPI description not found at {self.spec}; "
                         "the repository must sit beside shared/")
        self._log_file = tempfile.NamedTemporaryFile(prefix="prism-", suffix=".log", delete=False)
        last_error: Exception | None = None
        for _ in range(attempts):  # another process may take the free port first
            self.port = free_port(self.host)
            began = time.monotonic()
            self.process = subprocess.Popen(
                [str(self.prism), "mock", "--errors", "-h", self.host, "-p", str(self.port), str(self.spec)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches any children
            )
            try:
                wait_for_port(self.port, self.host, timeout=timeout, process=self.process)
                self.startup_seconds = time.monotonic() - began
                return self
            except (RuntimeError, TimeoutError) as error:
                last_error = error
                self._stop_process()
        log = self.log()
        self._remove_log()
        raise RuntimeError(f"Prism did not start after {attempts} attempts: {last_error}\n--- log ---\n{log[-4000:]}")

    def stop(self) -> None:
        """Stop Prism (SIGTERM, then SIGKILL after 10 s) and remove its log."""
        try:
            self._stop_process()
        finally:
            self._remove_log()

    def log(self, since: int = 0) -> str:
        """Prism's output from byte offset `since` (see log_size)."""
        if self._log_file is None:
            return ""
        with open(self._log_file.name, "rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        return os.path.getsize(self._log_file.name) if self._log_file is not None else 0

    def wait_for_log(self, text: str, since: int = 0, timeout: float = 5.0) -> str:
        """Prism's output since `since` once it contains `text` (Prism logs a little after answering)."""
        deadline = time.monotonic() + timeout
        while text not in (found := self.log(since)):
            if time.monotonic() > deadline:
                raise AssertionError(f"Prism never logged {text!r}; it logged:\n{found[-4000:]}")
            time.sleep(0.05)
        return found

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _remove_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            Path(self._log_file.name).unlink(missing_ok=True)
            self._log_file = None
