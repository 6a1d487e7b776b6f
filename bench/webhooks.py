"""Webhook throughput and latency: the app under gunicorn against a bare Flask endpoint.

Both run under the same gunicorn settings on 127.0.0.1. Traffic is signed simulated Twilio
traffic: the simulator plays calls once against the app to record realistic request
sequences, which are then replayed (with fresh call SIDs, so nothing is a redelivery)
paced at --rate calls per second, and then as fast as the server takes them.

The two servers take turns, round after round, so a slow spell of the machine (it shares
its cores) lands on both rather than on one: each round's ratio compares the app with the
bare endpoint measured just before or after it, and the median round is reported with the
spread. Latency percentiles pool every round.

It also prints the CPU each server spent per request (all its gunicorn processes), which
shows the cost of a webhook apart from the machine's speed, and the load generator's, which
shows it did not set the pace. A run fails if any request failed, any replayed call is
missing from the app's database, or any webhook went to the spool instead of the database.

Two more servers take their turns flat out, to show how much of the gap to the bare endpoint
is work no handler can skip (bench/bare_app.py; neither is part of the target): "verify only"
also parses the form and verifies the signature, storing nothing; "verify and store" then
also stores each webhook once, as received, in SQLite, and nothing else, before answering.

Target (issue 2): requests/s ratio >= 0.6 and p99 < 50 ms at 50 calls/s on SQLite.
"""
from __future__ import annotations

import argparse
import secrets
import sqlite3
import statistics
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT)]

from live import LiveApp  # noqa: E402
from replay import Figures, Replayer, renamed  # noqa: E402

from helpdesk.simulator import RequestsTransport, Simulator, TrafficProfile, run_traffic  # noqa: E402
from helpdesk.voice.journal import fingerprint  # noqa: E402

Call = list[tuple[str, list[tuple[str, str]]]]


def record_calls(url: str, token: str, calls: int) -> list[Call]:
    transport = RequestsTransport()
    simulator = Simulator(url, token, transport=transport, speed=0, duplicate=0.05, out_of_order=0.2)
    result = run_traffic(simulator, TrafficProfile(seed=50), calls=calls, rate_per_second=None, concurrency=8)
    transport.close()
    if result.summary.errors:
        raise SystemExit(f"recording failed: {result.summary.errors} errors")
    return [[(urllib.parse.urlsplit(r.url).path, list(r.params)) for r in trace.requests] for trace in result.traces]


class Traffic:
    """The recorded calls, renamed afresh for every run."""

    def __init__(self, template: list[Call]):
        self.template = template
        self.runs = 0

    def calls(self, count: int) -> list[Call]:
        self.runs += 1
        rounds = [renamed(self.template, self.runs * 1000 + i) for i in range(count // len(self.template) + 1)]
        return [call for batch in rounds for call in batch][:count]


def pooled(runs: list[Figures]) -> Figures:
    return Figures(sum(r.requests for r in runs), sum(r.errors for r in runs), sum(r.seconds for r in runs),
                   [ms for r in runs for ms in r.latencies_ms], sum(r.client_cpu_seconds for r in runs),
                   sum(r.server_cpu_seconds for r in runs))


def round_ratios(runs: list[Figures], baseline: list[Figures]) -> list[float]:
    """Each round's requests/s against the baseline's in the same round, in order."""
    return sorted(a.per_second / b.per_second for a, b in zip(runs, baseline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second in the paced runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each paced run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers for both servers")
    parser.add_argument("--rounds", type=int, default=5, help="turns each server takes (paced: 2 at most)")
    parser.add_argument("--saturation-calls", type=int, default=300, help="calls in each saturation run")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads in the saturation runs")
    args = parser.parse_args()

    token = secrets.token_hex(16)
    env = {"SECRET_KEY": secrets.token_hex(16), "TWILIO_AUTH_TOKEN": token,
           "HELPDESK_CONFIG": str(ROOT / "bench" / "always_open.toml")}
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    app = LiveApp(f"sqlite:///{workdir}/bench.db", env, workers=args.workers)
    bare = LiveApp("sqlite://", env, workers=args.workers, app="bare_app:create_app()", migrate=False)
    floor = LiveApp("sqlite://", env, workers=args.workers, app="bare_app:create_verifying_app()", migrate=False)
    store = LiveApp("sqlite://", env, workers=args.workers, app="bare_app:create_storing_app()", migrate=False)
    store.env["BENCH_STORE_PATH"] = str(workdir / "store.db")
    for baseline in (bare, floor, store):
        baseline.env["PYTHONPATH"] = str(ROOT / "bench")
    servers = {"bare Flask": bare, "verify only": floor, "verify and store": store, "helpdesk": app}
    paced: dict[str, list[Figures]] = {name: [] for name in ("bare Flask", "helpdesk")}
    flat_out: dict[str, list[Figures]] = {name: [] for name in servers}
    stored_by_floor: set[str] = set()  # the distinct webhooks sent to "verify and store"
    with app, bare, floor, store:
        traffic = Traffic(record_calls(app.url, token, 200))
        per_call = sum(map(len, traffic.template)) / len(traffic.template)
        print(f"traffic: {len(traffic.template)} recorded calls, {per_call:.1f} webhooks per call; "
              f"gunicorn: {args.workers} sync workers each; database: SQLite", flush=True)
        sent = {name: 0 for name in servers}

        def replay(name: str, count: int, calls_per_second: float | None, workers: int) -> Figures:
            calls = traffic.calls(count)
            sent[name] += len(calls)
            if name == "verify and store":
                stored_by_floor.update(fingerprint(path, params) for call in calls for path, params in call)
            server = servers[name]
            return Replayer(server.url, token, server.process.pid).run(calls, calls_per_second, workers)

        for name in servers:  # warm up: first requests load code and fill caches
            replay(name, 100, None, args.concurrency)
        for round_number in range(args.rounds):
            # Alternate who goes first, so neither always follows the other's load.
            for name in list(servers)[:: 1 if round_number % 2 == 0 else -1]:
                if round_number < 2 and name in paced:
                    paced[name].append(replay(name, int(args.rate * args.seconds), args.rate, 128))
                flat_out[name].append(replay(name, args.saturation_calls, None, args.concurrency))
            ratio = flat_out["helpdesk"][-1].per_second / flat_out["bare Flask"][-1].per_second
            print(f"round {round_number + 1}: " + ", ".join(
                f"{name} {runs[-1].per_second:.0f} req/s" for name, runs in flat_out.items()) + f", ratio {ratio:.2f}",
                flush=True)
        log = app.log_text()
        assert "Traceback" not in log, log[-2000:]
        # A webhook kept in the spool is answered without being stored: it must not count as done.
        if "kept in the spool" in log:
            raise SystemExit("some webhooks went to the spool (the database did not take them): the figures do not count")
    # Fast figures mean nothing unless the work was done: every call replayed is in the database.
    with sqlite3.connect(workdir / "bench.db") as database:
        stored = database.execute("SELECT count(*) FROM calls").fetchone()[0]
    sent_to_app = len(traffic.template) + sent["helpdesk"]  # the recording, then the replays
    if stored != sent_to_app:
        raise SystemExit(f"the app stored {stored} calls of the {sent_to_app} replayed")
    with sqlite3.connect(workdir / "store.db") as database:
        kept = database.execute("SELECT count(*) FROM events").fetchone()[0]
    if kept != len(stored_by_floor):
        raise SystemExit(f"'verify and store' kept {kept} webhooks of the {len(stored_by_floor)} distinct ones sent")

    paced_runs = len(paced["helpdesk"])
    print(f"\npaced: {args.rate:g} calls/s, {paced_runs} runs of {args.seconds:g} s each")
    for name, runs in paced.items():
        print("  " + pooled(runs).line(name))
    print(f"saturation: {args.rounds} rounds of {args.saturation_calls} calls, {args.concurrency} client threads")
    for name, runs in flat_out.items():
        print("  " + pooled(runs).line(name))
    ratios = round_ratios(flat_out["helpdesk"], flat_out["bare Flask"])
    app_paced = pooled(paced["helpdesk"])
    errors = app_paced.errors + sum(r.errors for r in flat_out["helpdesk"])
    print(f"\nratio helpdesk/bare requests/s at saturation: {statistics.median(ratios):.2f} median of "
          f"{len(ratios)} rounds (range {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.6)")
    print(f"ratio helpdesk/bare requests/s paced:         "
          f"{app_paced.per_second / pooled(paced['bare Flask']).per_second:.2f}")
    for name, baseline in (("verify only", "bare Flask"), ("verify and store", "bare Flask"),
                           ("helpdesk", "verify and store")):
        others = round_ratios(flat_out[name], flat_out[baseline])
        print(f"ratio {name}/{baseline} requests/s at saturation: {statistics.median(others):.2f} median "
              f"(range {others[0]:.2f}-{others[-1]:.2f}; not a target)")
    cpu_ms = {name: pooled(runs).server_cpu_ms for name, runs in flat_out.items()}
    print(f"server CPU per request at saturation: helpdesk {cpu_ms['helpdesk']:.2f} ms, "
          f"verify and store {cpu_ms['verify and store']:.2f} ms, verify only {cpu_ms['verify only']:.2f} ms, "
          f"bare {cpu_ms['bare Flask']:.2f} ms (ratio bare/helpdesk {cpu_ms['bare Flask'] / cpu_ms['helpdesk']:.2f})")
    print(f"helpdesk p99 at {args.rate:g} calls/s: {app_paced.percentile(99):.1f} ms (target < 50 ms); "
          f"errors: {errors}; calls stored: {stored} of {sent_to_app} replayed")
    baselines = (paced["bare Flask"], flat_out["bare Flask"], flat_out["verify only"], flat_out["verify and store"])
    if errors or any(r.errors for runs in baselines for r in runs):
        raise SystemExit("some requests failed: the figures above do not count")


if __name__ == "__main__":
    main()
