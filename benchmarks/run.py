"""`make bench`: the streaming benchmarks (ingest, /recommendations, freshness), then the ALS one.

    .venv/bin/python benchmarks/run.py                 # everything, full size (several minutes)
    .venv/bin/python benchmarks/run.py --quick         # a short trial run of the harness (~1.5 min)
    .venv/bin/python benchmarks/run.py --only streaming
    .venv/bin/python benchmarks/run.py --profile       # also sample the worker with py-spy

Writes benchmarks/results/streaming.json (numbers, machine, versions, the exact command) and
benchmarks/results/streaming.md (the table), prints the table, and rewrites the block between
`<!-- bench:start -->` and `<!-- bench:end -->` in README.md (left untouched, with a warning, when the
markers are absent). Needs the local services (`.venv/bin/recstream services up`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

TARGETS = {
    "ingest_events_per_s": 25_000,
    "http_requests_per_s": 3_000,
    "http_p99_ms": 15.0,
    "freshness_p99_ms": 500.0,
}

sys.path.insert(0, str(HERE))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        choices=["all", "streaming", "als"],
        default="all",
        help="run only the streaming benchmarks, or only the ALS one (default: both)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="trial sizes: 20,000 events, 3 s of HTTP load, 30 freshness samples",
    )
    p.add_argument("--events", type=int, help="events to ingest (default 100,000; --quick 20,000)")
    p.add_argument("--users", type=int, default=4_000)
    p.add_argument("--videos", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--http-seconds", type=int, help="load per HTTP target (default 10; --quick 3)")
    p.add_argument("--concurrency", type=int, default=16, help="HTTP connections (same for every target)")
    p.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto = wrk when installed, else an async Python client",
    )
    p.add_argument("--freshness-samples", type=int, help="default 300; --quick 30")
    p.add_argument(
        "--profile", action="store_true", help="sample the worker with py-spy during ingest and HTTP"
    )
    p.add_argument("--py-spy", help="path to py-spy (default: on PATH or beside this Python)")
    p.add_argument(
        "--stages",
        default="http,freshness",
        help="stages after ingest (which always runs: it builds their state); e.g. '' or 'http'",
    )
    p.add_argument(
        "--worker-log-level",
        default="info",
        choices=["debug", "info", "warn", "error"],
        help="RECSTREAM_LOG_LEVEL of the benchmarked workers (default: info, the production default)",
    )
    p.add_argument(
        "--max-ingest-seconds",
        type=float,
        default=3600.0,
        help="bound of the worker's ingest (it also stops when no counter moves for 60 s)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run's topics, data dir and MongoDB database")
    p.add_argument("--no-readme", action="store_true", help="do not touch README.md")
    p.add_argument("--als-args", default="", help="extra arguments for benchmarks/als_benchmark.py")
    return p.parse_args(argv)


def machine_info() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in (
        "recstream",
        "faust-streaming",
        "aiokafka",
        "aiohttp",
        "redis",
        "pydantic",
        "rocksdict",
        "pymongo",
        "nx-27017",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    libs = ROOT / ".local" / "kafka" / "libs"
    broker = sorted(p.name for p in libs.glob("kafka_2.*-*.jar")) if libs.exists() else []
    out["kafka_broker"] = broker[0].removesuffix(".jar").split("-", 1)[1] if broker else None
    if shutil.which("wrk"):
        first = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
        out["wrk"] = first[0].split(" [")[0] if first else "wrk"
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        out["git_dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except OSError:
        pass
    return out


def command_line() -> str:
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return shlex.join([exe, script, *sys.argv[1:]])


# --- the table -----------------------------------------------------------------------------------
def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.1f}{unit}" if abs(x) >= 10 else f"{x:,.2f}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.3g}x"


def _meets(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def rows(res: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    ing = res.get("ingest", {})
    w, raw, rawv = ing.get("worker", {}), ing.get("raw_aiokafka", {}), ing.get("raw_aiokafka_validate", {})
    t = TARGETS
    if w:
        h, p, peer = w.get("history_events_per_s"), w.get("pipeline_events_per_s"), raw.get("events_per_s")
        out.append(
            [
                "ingest, history agent (first stage)",
                f"{_num(h)} events/s",
                f"raw aiokafka {_num(peer)}/s",
                _ratio(h, peer),
                f">= {t['ingest_events_per_s']:,}/s",
                _meets(h >= t["ingest_events_per_s"] if h else None),
            ]
        )
        out.append(
            [
                "ingest, end of pipeline (engagement + covisit)",
                f"{_num(p)} events/s",
                f"raw aiokafka {_num(peer)}/s",
                _ratio(p, peer),
                f">= {t['ingest_events_per_s']:,}/s",
                _meets(p >= t["ingest_events_per_s"] if p else None),
            ]
        )
        if rawv.get("events_per_s"):
            out.append(
                [
                    "(reference) raw aiokafka + pydantic validation",
                    f"{_num(rawv['events_per_s'])} events/s",
                    f"raw aiokafka {_num(peer)}/s",
                    _ratio(rawv["events_per_s"], peer),
                    "",
                    "",
                ]
            )
    http = res.get("http", {})
    rs, bare, barer = (
        http.get("recstream", {}),
        http.get("bare_aiohttp", {}),
        http.get("bare_aiohttp_recommend", {}),
    )
    if rs and "error" not in rs:
        state = http.get("state", {})
        at = (
            f"{state.get('videos_in_catalog', 0):,} videos ({state.get('videos_with_neighbours', 0):,} with "
            f"neighbours), {state.get('users_with_history', 0):,} users; c={http.get('concurrency')}"
        )
        out.append(
            [
                f"`/recommendations` throughput ({at})",
                f"{_num(rs['requests_per_s'])} req/s"
                + (f" ({rs['errors']:,} errors)" if rs.get("errors") else ""),
                f"bare aiohttp {_num(bare.get('requests_per_s'))} req/s",
                _ratio(rs["requests_per_s"], bare.get("requests_per_s")),
                f">= {t['http_requests_per_s']:,}/s",
                _meets(rs["requests_per_s"] >= t["http_requests_per_s"] and not rs.get("errors")),
            ]
        )
        out.append(
            [
                "`/recommendations` latency p50 / p99",
                f"{_num(rs['p50_ms'])} / {_num(rs['p99_ms'])} ms",
                f"bare aiohttp {_num(bare.get('p50_ms'))} / {_num(bare.get('p99_ms'))} ms",
                _ratio(rs["p99_ms"], bare.get("p99_ms")) + " (p99)",
                f"p99 <= {t['http_p99_ms']:g} ms",
                _meets(rs["p99_ms"] <= t["http_p99_ms"] and not rs.get("errors")),
            ]
        )
        if barer.get("requests_per_s"):
            out.append(
                [
                    "(reference) recommend() under bare aiohttp, no Faust",
                    f"{_num(barer['requests_per_s'])} req/s, p99 {_num(barer['p99_ms'])} ms",
                    f"bare aiohttp {_num(bare.get('requests_per_s'))} req/s",
                    _ratio(barer["requests_per_s"], bare.get("requests_per_s")),
                    "",
                    "",
                ]
            )
    fr = res.get("freshness", {})
    if fr.get("samples"):
        e, k, g = fr["effect"], fr["kafka_delivery"], fr["seen_video_gone"]
        note = (
            f"; in {fr['no_neighbour_in_top_k']} no neighbour reached the top {fr.get('k', 20)} "
            f"within {fr['timeout_s']:g} s"
            if fr.get("no_neighbour_in_top_k")
            else ""
        )
        out.append(
            [
                f"freshness: event sent -> video gone and a neighbour in that user's list "
                f"({e['n']} of {fr['samples']} samples{note})",
                f"p50 {_num(e['p50_ms'])} / p99 {_num(e['p99_ms'])} ms",
                f"Kafka delivery p50 {_num(k['p50_ms'])} / p99 {_num(k['p99_ms'])} ms",
                _ratio(e["p99_ms"], k["p99_ms"]) + " (p99)",
                f"p99 <= {t['freshness_p99_ms']:g} ms",
                _meets(
                    e["p99_ms"] is not None
                    and e["p99_ms"] <= t["freshness_p99_ms"]
                    and not fr.get("not_gone")
                ),
            ]
        )
        out.append(
            [
                f"freshness: event sent -> watched video gone ({g['n']} of {fr['samples']} samples)",
                f"p50 {_num(g['p50_ms'])} / p99 {_num(g['p99_ms'])} ms",
                f"Kafka delivery p50 {_num(k['p50_ms'])} / p99 {_num(k['p99_ms'])} ms",
                _ratio(g["p99_ms"], k["p99_ms"]) + " (p99)",
                f"p99 <= {t['freshness_p99_ms']:g} ms",
                _meets(
                    g["p99_ms"] is not None
                    and g["p99_ms"] <= t["freshness_p99_ms"]
                    and not fr.get("not_gone")
                ),
            ]
        )
    return out


def markdown(res: dict[str, Any]) -> str:
    m, v = res["machine"], res["versions"]
    lines = [
        "| benchmark | recstream | peer (same run) | ratio | target | meets |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(res)]
    written = res.get("ingest", {}).get("kafka_messages_per_event")
    if written:
        parts = ", ".join(f"{k} {v:g}" for k, v in written.items() if k != "total")
        lines += ["", f"Kafka messages the worker writes per ingested event: {written['total']:g} ({parts})."]
    trial = " **Trial run (reduced sizes): not the published numbers.**" if res.get("trial") else ""
    lines += [
        "",
        f"{res['date']}, {m['cores']} cores ({m['cpu']}), load average at start "
        f"{m['load_average_at_start'][0]}; Python {v['python']}, faust-streaming {v['faust-streaming']}, "
        f"aiokafka {v['aiokafka']}, aiohttp {v['aiohttp']}, Kafka {v.get('kafka_broker')}, "
        f"{res.get('isolation', {}).get('redis', 'redis')}; commit {v.get('git_commit')}"
        f"{' (dirty)' if v.get('git_dirty') else ''}. Command: `{res['command']}`.{trial}",
        "Ratio = recstream / peer (throughput: higher is better; latency: lower is better). Everything "
        "(Kafka, Redis, MongoDB, the worker, the load generator) shares the same machine.",
    ]
    als = RESULTS / "als.md"
    if als.exists():
        lines += ["", als.read_text().strip()]
    elif (RESULTS / "als.json").exists():
        lines += ["", "ALS (Spark MLlib vs implicit): see `benchmarks/results/als.json`."]
    return "\n".join(lines) + "\n"


def profile_markdown(profile: dict[str, Any], res: dict[str, Any]) -> str:
    """Where the worker spends its CPU (py-spy --gil samples), per stage."""
    lines = [
        f"# Worker profile ({res['date']}, `{res['command']}`)",
        "",
        "py-spy samples of the worker process while it holds the GIL (Python CPU time, idle waits "
        "excluded), 100 Hz. Shares are of all samples in the stage.",
        "",
    ]
    for stage, d in profile.items():
        if not d.get("samples"):
            lines += [f"## {stage}: no samples ({d.get('error', '')})", ""]
            continue
        lines += [
            f"## {stage} ({d['samples']:,} samples)",
            "",
            "| component (leaf frame) | self % |",
            "|---|---|",
        ]
        lines += [f"| {name} | {pct} |" for name, pct in d["component_self_pct"]]
        lines += ["", "| where the agents / serving spend it | % |", "|---|---|"]
        for name, b in d.get("breakdown_pct", {}).items():
            lines.append(f"| **{name}** | **{b['total']}** |")
            lines += [f"| &nbsp;&nbsp;{child} | {pct} |" for child, pct in b["children"] if pct >= 0.5]
        lines += ["", "| top functions, inclusive | % |", "|---|---|"]
        lines += [f"| {name} | {pct} |" for name, pct in d["inclusive_pct"][:20]]
        lines += ["", "| top functions, self | % |", "|---|---|"]
        lines += [f"| {name} | {pct} |" for name, pct in d["self_pct"][:15]]
        lines.append("")
    return "\n".join(lines)


def update_readme(block: str) -> None:
    text = README.read_text() if README.exists() else ""
    if START not in text or END not in text or text.index(START) > text.index(END):
        print(
            f"warning: {README.name} has no {START} ... {END} markers; left untouched. Paste "
            f"benchmarks/results/streaming.md between them.",
            file=sys.stderr,
        )
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{block}{END}{tail}")
    print(f"updated the benchmark block in {README.name}", file=sys.stderr)


# --- running -------------------------------------------------------------------------------------
def run_streaming(args: argparse.Namespace) -> dict[str, Any]:
    from streaming import BenchConfig, run_all, say

    cfg = BenchConfig(
        events=args.events or (20_000 if args.quick else 100_000),
        users=args.users,
        videos=args.videos,
        seed=args.seed,
        http_duration_s=args.http_seconds or (3 if args.quick else 10),
        http_warmup_s=1 if args.quick else 2,
        http_concurrency=args.concurrency,
        load_generator=args.load_generator,
        freshness_samples=args.freshness_samples or (30 if args.quick else 300),
        profile=args.profile,
        py_spy=args.py_spy,
        keep=args.keep,
        worker_log_level=args.worker_log_level,
        ingest_timeout_s=args.max_ingest_seconds,
        stages=tuple(x for x in args.stages.replace(" ", "").split(",") if x),
    )
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "trial": bool(args.quick),
        "machine": machine_info(),
        "versions": versions(),
        "targets": TARGETS,
    }
    started = time.monotonic()
    say(f"streaming benchmarks: {cfg.events:,} events, {cfg.videos:,} videos, {cfg.users:,} users")
    res.update(run_all(cfg))
    res["seconds"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    profile = res.pop("profile", None)
    if profile:
        (RESULTS / "profile.json").write_text(json.dumps(profile, indent=1) + "\n")
        (RESULTS / "profile.md").write_text(profile_markdown(profile, res))
        say(f"profile summaries: {(RESULTS / 'profile.md').relative_to(ROOT)}, profile.json")
    (RESULTS / "streaming.json").write_text(json.dumps(res, indent=2) + "\n")
    table = markdown(res)
    (RESULTS / "streaming.md").write_text(table)
    say(
        f"done in {res['seconds']} s: {(RESULTS / 'streaming.json').relative_to(ROOT)}, "
        f"{(RESULTS / 'streaming.md').relative_to(ROOT)}"
    )
    print(table)
    return res


def run_als(args: argparse.Namespace) -> int:
    script = HERE / "als_benchmark.py"
    if not script.exists():
        print("ALS benchmark: benchmarks/als_benchmark.py not present; skipped", file=sys.stderr)
        return 0
    extra = shlex.split(args.als_args)
    if args.quick and "--quick" not in extra:
        extra.append("--quick")
    print(f"[bench] ALS: {shlex.join([str(script.relative_to(ROOT)), *extra])}", file=sys.stderr, flush=True)
    return subprocess.run([sys.executable, str(script), *extra], cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rc = 0
    res = None
    if args.only in ("all", "streaming"):
        res = run_streaming(args)
    if args.only in ("all", "als"):
        rc = run_als(args)
    if args.quick and not args.no_readme:
        print("--quick: README.md left alone (trial numbers are not for publishing)", file=sys.stderr)
    elif not args.no_readme and (res is not None or (RESULTS / "streaming.json").exists()):
        if res is None:
            res = json.loads((RESULTS / "streaming.json").read_text())
        update_readme(markdown(res))  # after ALS, so its als.md (if any) is part of the block
    return rc


if __name__ == "__main__":
    sys.exit(main())
