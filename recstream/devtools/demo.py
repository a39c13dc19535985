"""`recstream demo`: services, one worker and the simulator at a visible rate, until Ctrl-C."""

from __future__ import annotations

import argparse
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40.0, help="simulated events per second")
    parser.add_argument("--seed", type=int, default=7)


def run(args: argparse.Namespace) -> int:
    from recstream.devtools import services
    from recstream.devtools.devcluster import Cluster
    from recstream.settings import get_settings

    settings = get_settings()
    running_before = {r["service"] for r in services.status(settings) if r["pid"]}
    services.up(settings)
    started_services = [
        r["service"] for r in services.status(settings) if r["pid"] and r["service"] not in running_before
    ]

    cluster = Cluster(settings, settings.data_dir, isolated=False, log_level="info")
    # Keys, as production has them: generated for this run unless set (RECSTREAM_*_API_KEY).
    write_key = (
        settings.write_api_key.get_secret_value() if settings.write_api_key else secrets.token_urlsafe(18)
    )
    read_key = (
        settings.read_api_key.get_secret_value() if settings.read_api_key else secrets.token_urlsafe(18)
    )
    cluster.env.update({"RECSTREAM_WRITE_API_KEY": write_key, "RECSTREAM_READ_API_KEY": read_key})
    print("starting a worker (log: %s) ..." % (settings.data_dir / f"worker-{settings.web_port}.log"))
    worker = cluster.start_worker(settings.web_port)
    simulator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "recstream"),
            "simulate",
            "--users",
            str(args.users),
            "--videos",
            str(args.videos),
            "--rate",
            str(args.rate),
            "--duration",
            "0",
            "--seed",
            str(args.seed),
        ],
        start_new_session=True,
    )
    base = f"http://{settings.web_host}:{settings.web_port}"
    print(
        f"""
recstream is running: the simulator sends ~{args.rate:g} events/s from {args.users} users.

  API keys         write {write_key}   read {read_key}
                   (export RECSTREAM_WRITE_API_KEY={write_key} for the closed loop and your own clients)

  dashboard        {base}/?key={read_key}
  trending         {base}/trending?k=10
  recommendations  {base}/recommendations/u1?k=10
  video stats      {base}/videos/v1/stats
  similar videos   {base}/videos/v1/similar
  health, metrics  {base}/health   {base}/metrics

  send your own:   curl -XPOST {base}/events -H 'Content-Type: application/json' -H 'X-API-Key: {write_key}' -d '{{"type":"view","user_id":"me","video_id":"v1","watch_time_ms":9000,"duration_ms":10000}}'
                   curl {base}/recommendations/me

Ctrl-C stops the simulator, the worker{" and the services it started" if started_services else ""}.
""",
        flush=True,
    )
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and simulator.poll() is None and worker.proc and worker.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", flush=True)
        if simulator.poll() is None:
            simulator.send_signal(signal.SIGINT)
            try:
                simulator.wait(10)
            except subprocess.TimeoutExpired:
                simulator.kill()
        cluster.stop()
        for name, service in services.local_services(settings).items():
            if name in started_services and service is not None:
                print(service.stop())
    return 0
