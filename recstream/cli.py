"""The `recstream` command: services, worker, simulator (and, as they land, training and evaluation)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from recstream.settings import get_settings


def _services(args: argparse.Namespace) -> int:
    from recstream.devtools import services

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
    from recstream.settings import get_settings

    if get_settings().event_loop == "uvloop":
        # Before the app module exists: Faust and mode bind the loop they find when they first need one.
        import mode.loop

        mode.loop.use("uvloop")
    from recstream.streaming.app import run_worker

    run_worker(args.extra)
    return 0


# Subcommands that live beside the code they run. Each module has `add_arguments(parser)` and
# `run(args) -> int`, and keeps its top-level imports light (heavy ones go inside `run`).
_COMMAND_MODULES = {
    "simulate": ("recstream.producers.simulator", "publish a synthetic catalog and event stream to Kafka"),
    "replay": ("recstream.producers.replay", "publish a real dataset to Kafka in timestamp order"),
    "train": ("recstream.training.cli", "train ALS with Spark from the log and publish the model"),
    "evaluate": ("recstream.evaluation.cli", "offline evaluation of every strategy on a dataset"),
    "demo": ("recstream.devtools.demo", "run services, a worker and the simulator until Ctrl-C"),
    "rebuild": ("recstream.streaming.rebuild", "rebuild every derived state from the log under a new app id"),
    "web": (
        "recstream.web.server",
        "serve the HTTP API without agents (several processes may share the port)",
    ),
}


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

    for name, (module_name, help_text) in _COMMAND_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name and (module_name + ".").startswith(exc.name + ".")):
                raise
            continue  # not part of this build yet
        p = sub.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from recstream.devtools.services import ServiceError

    try:
        return args.func(args)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
