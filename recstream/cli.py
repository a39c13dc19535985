"""The `recstream` command: services, worker, simulator (and, as they land, training and evaluation)."""

from __future__ import annotations

import argparse
import json
import sys

from recstream.settings import get_settings


def _services(args: argparse.Namespace) -> int:
    from recstream import services

    settings = get_settings()
    if args.action == "up":
        services.up(settings)
    elif args.action == "down":
        services.down(settings)
    else:
        rows = services.status(settings)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'service':8} {'pid':>8}  {'address':28} {'health':8} detail")
            for r in rows:
                health = "-" if r["healthy"] is None else ("healthy" if r["healthy"] else "DOWN")
                print(f"{r['service']:8} {r['pid'] or '-':>8}  {r['address']:28} {health:8} {r['detail']}")
        if any(r["healthy"] is False for r in rows):
            return 1
    return 0


def _worker(args: argparse.Namespace) -> int:
    from recstream.app import run_worker

    run_worker(args.extra)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from recstream.simulator import SimulationConfig, run_simulation

    config = SimulationConfig(
        users=args.users,
        videos=args.videos,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        progress=not args.quiet,
    )
    stats = run_simulation(get_settings(), config)
    print(json.dumps(stats))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("services", help="start, stop or inspect the local Kafka, Redis and MongoDB")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(func=_services)

    p = sub.add_parser("worker", help="run a Faust worker with its HTTP views (extra args go to faust)")
    p.add_argument("extra", nargs=argparse.REMAINDER)
    p.set_defaults(func=_worker)

    p = sub.add_parser("simulate", help="publish a synthetic catalog and event stream to Kafka")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--videos", type=int, default=500)
    p.add_argument("--rate", type=float, default=200.0, help="events per second (0 = as fast as possible)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from recstream.services import ServiceError

    try:
        return args.func(args)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
