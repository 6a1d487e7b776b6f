"""Webhook throughput and latency: the app under gunicorn against a bare Flask endpoint.

Both run under the same gunicorn settings on 127.0.0.1. Traffic is signed simulated Twilio
traffic: the simulator plays calls once against the app to record realistic request
sequences, which are then replayed (with fresh call SIDs, so nothing is a redelivery)
paced at --rate calls per second, and then as fast as the server takes them.

Target (issue 2): requests/s ratio >= 0.6 and p99 < 50 ms at 50 calls/s on SQLite.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT)]

from live import LiveApp  # noqa: E402
from replay import Replayer, renamed  # noqa: E402

from helpdesk.simulator import RequestsTransport, Simulator, TrafficProfile, run_traffic  # noqa: E402


def record_calls(url: str, token: str, calls: int) -> list[list[tuple[str, list[tuple[str, str]]]]]:
    transport = RequestsTransport()
    simulator = Simulator(url, token, transport=transport, speed=0, duplicate=0.05, out_of_order=0.2)
    result = run_traffic(simulator, TrafficProfile(seed=50), calls=calls, rate_per_second=None, concurrency=8)
    transport.close()
    if result.summary.errors:
        raise SystemExit(f"recording failed: {result.summary.errors} errors")
    return [[(urllib.parse.urlsplit(r.url).path, list(r.params)) for r in trace.requests] for trace in result.traces]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second in the paced run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the paced run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers for both servers")
    parser.add_argument("--saturation-calls", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16, help="client threads in the saturation run")
    args = parser.parse_args()

    token = secrets.token_hex(16)
    env = {"SECRET_KEY": secrets.token_hex(16), "TWILIO_AUTH_TOKEN": token,
           "HELPDESK_CONFIG": str(ROOT / "bench" / "always_open.toml")}
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    app = LiveApp(f"sqlite:///{workdir}/bench.db", env, workers=args.workers)
    bare = LiveApp("sqlite://", env, workers=args.workers, app="bare_app:create_app()", migrate=False)
    bare.env["PYTHONPATH"] = str(ROOT / "bench")
    with app, bare:
        template = record_calls(app.url, token, 200)
        per_call = sum(map(len, template)) / len(template)
        paced_calls = int(args.rate * args.seconds)
        print(f"traffic: {len(template)} recorded calls, {per_call:.1f} webhooks per call; "
              f"gunicorn: {args.workers} sync workers each; database: SQLite")

        def calls(round_number: int, count: int):
            rounds = [renamed(template, round_number * 1000 + i) for i in range(count // len(template) + 1)]
            return [call for batch in rounds for call in batch][:count]

        results = {}
        for name, server, offset in (("bare Flask", bare, 1), ("helpdesk", app, 2)):
            replayer = Replayer(server.url, token)
            paced = replayer.run(calls(offset, paced_calls), calls_per_second=args.rate, workers=128)
            flat_out = replayer.run(calls(offset + 10, args.saturation_calls), calls_per_second=None,
                                    workers=args.concurrency)
            results[name] = (paced, flat_out)
        assert "Traceback" not in app.log_text(), app.log_text()[-2000:]

    print(f"\npaced: {args.rate:g} calls/s for {args.seconds:g} s")
    for name, (paced, _) in results.items():
        print("  " + paced.line(name))
    print(f"saturation: {args.saturation_calls} calls, {args.concurrency} client threads")
    for name, (_, flat_out) in results.items():
        print("  " + flat_out.line(name))
    app_paced, app_flat = results["helpdesk"]
    bare_paced, bare_flat = results["bare Flask"]
    ratio = app_flat.per_second / bare_flat.per_second
    print(f"\nratio helpdesk/bare requests/s at saturation: {ratio:.2f} (target >= 0.6)")
    print(f"ratio helpdesk/bare requests/s paced:         {app_paced.per_second / bare_paced.per_second:.2f}")
    print(f"helpdesk p99 at {args.rate:g} calls/s: {app_paced.percentile(99):.1f} ms (target < 50 ms); "
          f"errors: {app_paced.errors + app_flat.errors}")


if __name__ == "__main__":
    main()
