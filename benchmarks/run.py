"""`make bench`: the streaming benchmarks (ingest with its quixstreams peer, /recommendations, freshness
under load, POST /events burst, replay), then the serving one (`recstream web` vs bare aiohttp), then
the ALS one.

    .venv/bin/python benchmarks/run.py                 # everything, full size (~25-35 min)
    .venv/bin/python benchmarks/run.py --quick         # a short trial run of the harness (~5-7 min)
    .venv/bin/python benchmarks/run.py --only streaming
    .venv/bin/python benchmarks/run.py --only serving  # benchmarks/serving.py, then the README block
    .venv/bin/python benchmarks/run.py --profile       # also sample the worker (and the web role) with py-spy

Writes benchmarks/results/streaming.json (numbers, machine, versions, the exact command) and
benchmarks/results/streaming.md (the table), prints the table; serving.py writes results/serving.json
and serving.md. Then rewrites the block between `<!-- bench:start -->` and `<!-- bench:end -->` in
README.md with streaming.md, serving.md and als.md (left untouched, with a warning, when the markers
are absent). Needs the local services (`.venv/bin/recstream services up`).
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
    "pipeline_events_per_s": 10_000,  # end of pipeline, one worker process
    "pipeline_events_per_s_resolved": 5_000,  # the issue is resolved at this rate AND >= 1.0x quixstreams
    "quix_ratio": 1.0,  # recstream / quixstreams, same events, same broker, same run
    "kafka_messages_per_event": 2.0,
    "post_events_per_s": 20_000,  # POST /events, 10 s burst, batches of 500
    "burst_probe_p99_ms": 1_000.0,  # during a 3,000/s burst: a user's own event in their history
    "burst_catch_up_s": 5.0,  # after the burst's end: every event through history and engagement
    "freshness_p99_ms": 500.0,  # while the pipeline ingests 5,000 events/s
    "replay_minutes": 2.0,  # 1,000,000 interactions to fully materialised state
    "http_requests_per_s": 3_000,
    "http_p99_ms": 15.0,
}

QUICK = {  # --quick: a trial of the whole harness in a few minutes, not for publishing
    "events": 100_000,
    "users": 20_000,
    "videos": 5_000,
    "replay_events": 100_000,
    "paced_events": 15_000,
    "burst_seconds": 5.0,
    "freshness_samples": 30,
    "http_seconds": 3,
}

sys.path.insert(0, str(HERE))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        choices=["all", "streaming", "serving", "als"],
        default="all",
        help="run only the streaming benchmarks, only the serving one or only the ALS one (default: all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="trial sizes: 100,000 events (20,000 users, 5,000 videos), 5 s POST burst, 15,000 paced "
        "events, 3 s of HTTP load, 30 freshness samples, 100,000 replayed",
    )
    p.add_argument(
        "--events", type=int, help="workload events to ingest (default 1,000,000; --quick 100,000)"
    )
    p.add_argument("--users", type=int, help="workload users (default 100,000; --quick 20,000)")
    p.add_argument("--videos", type=int, help="workload videos (default 20,000; --quick 5,000)")
    p.add_argument("--zipf", type=float, default=1.1, help="video popularity exponent (default 1.1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-quix", action="store_true", help="skip the quixstreams peer")
    p.add_argument(
        "--quix-timeout",
        type=float,
        default=600.0,
        help="bound of the quixstreams peer, s (past it: stopped, its rate reported as an upper bound)",
    )
    p.add_argument("--replay-events", type=int, help="events replayed (default 1,000,000; --quick 100,000)")
    p.add_argument(
        "--replay-workers",
        default="1,2",
        help="worker processes of each replay run, comma-separated (default 1,2: one, then one per core here)",
    )
    p.add_argument("--burst-seconds", type=float, help="POST /events burst (default 10; --quick 5)")
    p.add_argument(
        "--paced-events", type=int, help="events POSTed at 3,000/s (default 60,000; --quick 15,000)"
    )
    p.add_argument(
        "--background-rate", type=float, default=5_000.0, help="events/s produced during freshness (5,000)"
    )
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
        "--freshness-via",
        choices=["web", "worker"],
        default="web",
        help="read the samples' lists from a `recstream web` process (default: the deployment's read "
        "front) or from the worker's own views",
    )
    p.add_argument(
        "--profile", action="store_true", help="sample the worker with py-spy during ingest and HTTP"
    )
    p.add_argument("--py-spy", help="path to py-spy (default: on PATH or beside this Python)")
    p.add_argument(
        "--stages",
        default="http,freshness,burst,replay",
        help="stages after ingest (which always runs: it builds their state); e.g. '' or 'http,burst'",
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
    p.add_argument(
        "--serving-args",
        default="",
        help='extra arguments for benchmarks/serving.py (e.g. "--videos 50000 --ingest-rate 3000"); '
        "--quick, --seed, --concurrency, --http-seconds, --profile and --keep are passed on",
    )
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
    t = TARGETS
    ing = res.get("ingest", {})
    w, raw, rawv = ing.get("worker", {}), ing.get("raw_aiokafka", {}), ing.get("raw_aiokafka_validate", {})
    quix, exact = ing.get("quixstreams", {}), ing.get("exactness", {})
    produced = ing.get("produced", {})
    if w:
        h, p, peer = w.get("history_events_per_s"), w.get("pipeline_events_per_s"), raw.get("events_per_s")
        q = quix.get("events_per_s")
        ratio = p / q if p and q else None
        exact_note = "Redis = reference: " + ("yes" if exact.get("exact") else "**NO**")
        n = produced.get("events", res.get("config", {}).get("events", 0))
        if ratio is None and p and quix.get("events_per_s_at_most"):
            ratio = p / quix["events_per_s_at_most"]  # quixstreams did not finish: a lower bound
        goal = p is not None and p >= t["pipeline_events_per_s"] and bool(exact.get("exact"))
        resolved = (
            p is not None
            and p >= t["pipeline_events_per_s_resolved"]
            and ratio is not None
            and ratio >= t["quix_ratio"]
            and bool(exact.get("exact"))
        )
        out.append(
            [
                f"ingest, end of pipeline (history + engagement + co-visitation + Redis), one worker, "
                f"{n:,} events; {exact_note}"
                + (
                    f"; worker CPU {_num(w['cpu_us_per_event'])} µs per event"
                    if w.get("cpu_us_per_event")
                    else ""
                ),
                f"{_num(p)} events/s",
                f"quixstreams {_num(q)}/s" if q else _quix_failed(quix),
                _ratio(p, q)
                if q
                else (
                    f"> {p / quix['events_per_s_at_most']:.3g}x"
                    if p and quix.get("events_per_s_at_most")
                    else "n/a"
                ),
                f">= {t['pipeline_events_per_s']:,}/s (resolved: >= {t['pipeline_events_per_s_resolved']:,}/s "
                f"and >= {t['quix_ratio']:g}x quixstreams)",
                ("yes" if goal else "**no**")
                + ("" if goal else f" (resolved: {'yes' if resolved else 'no'})"),
            ]
        )
        if q:
            same = quix.get("counts_equal_reference") and quix.get("counts_equal_recstream")
            out.append(
                [
                    "(peer) the same work in quixstreams, same topic; per-video lifetime counts equal the "
                    "reference and recstream's: " + ("yes" if same else "**NO**"),
                    f"recstream {_num(p)}/s",
                    f"quixstreams {_num(q)}/s (first stage {_num(quix.get('first_stage_events_per_s'))}/s)",
                    _ratio(p, q),
                    f"recstream >= {t['quix_ratio']:g}x",
                    _meets(ratio >= t["quix_ratio"] if ratio else None),
                ]
            )
        out.append(
            [
                "ingest, history agent (first stage)",
                f"{_num(h)} events/s",
                f"raw aiokafka {_num(peer)}/s",
                _ratio(h, peer),
                "",
                "",
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
    written = ing.get("kafka_messages_per_event")
    if written:
        parts = ", ".join(f"{k} {v:g}" for k, v in written.items() if k != "total")
        out.append(
            [
                f"Kafka messages written per ingested event ({parts})",
                f"{written['total']:g}",
                "",
                "",
                f"<= {t['kafka_messages_per_event']:g}",
                _meets(written["total"] <= t["kafka_messages_per_event"]),
            ]
        )
    burst = res.get("burst", {})
    post, paced = burst.get("post_throughput", {}), burst.get("paced", {})
    if post.get("events_per_s") is not None:
        out.append(
            [
                f"`POST /events` accepted by {post.get('to', 'the worker')}, {post['seconds']:g} s burst, batches of "
                f"{res.get('config', {}).get('burst_batch', 500)}; the worker's pipeline caught up "
                f"{_num(post.get('caught_up_s_after_burst'))} s after"
                + (f" ({post['errors']:,} errors)" if post.get("errors") else ""),
                f"{_num(post['events_per_s'])} events/s",
                f"raw aiokafka producer {_num(produced.get('events_per_s'))}/s (workload.produce)",
                _ratio(post["events_per_s"], produced.get("events_per_s")),
                f">= {t['post_events_per_s']:,}/s",
                _meets(post["events_per_s"] >= t["post_events_per_s"] and not post.get("errors")),
            ]
        )
    if paced.get("probes"):
        p99 = paced.get("probe_p99_ms")
        out.append(
            [
                f"during {paced['accepted']:,} events POSTed at {_num(paced['events_per_s'])}/s"
                + (f" to {post['to']}" if post.get("to") else "")
                + ": a user's own "
                f"view -> `hist:{{user}}` in Redis ({paced['probes_seen']} of {paced['probes']} probes)",
                f"p50 {_num(paced['probe_p50_ms'])} / p99 {_num(p99)} / max {_num(paced['probe_max_ms'])} ms",
                "",
                "",
                f"<= {t['burst_probe_p99_ms']:g} ms",
                _meets(
                    p99 is not None
                    and p99 <= t["burst_probe_p99_ms"]
                    and not paced["probes_not_seen_within_15s"]
                ),
            ]
        )
        c = paced.get("caught_up_s_after_burst")
        out.append(
            [
                "after that burst: every event through history and engagement",
                f"{_num(c)} s after its end",
                "",
                "",
                f"<= {t['burst_catch_up_s']:g} s",
                _meets(c is not None and c <= t["burst_catch_up_s"]),
            ]
        )
    elif burst.get("error"):
        out.append(["`POST /events` burst", f"error: {burst['error'][:100]}", "", "", "", "**no**"])
    http = res.get("http", {})
    rs, bare = http.get("recstream", {}), http.get("bare_aiohttp", {})
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
    fr = res.get("freshness", {})
    if fr.get("samples"):
        e, k, g = fr["effect"], fr["kafka_delivery"], fr["seen_video_gone"]
        bg = fr.get("background", {})
        load = (
            f"while {_num(bg.get('events_per_s'))} events/s are ingested"
            if bg.get("events_per_s")
            else "idle"
        )
        # Runs before 2026-12-05 read the worker's own views and did not say so.
        load += {
            "web": ", lists read from `recstream web`",
            "worker": ", lists read from the worker's views",
        }.get(fr.get("via", "worker"), "")
        c = fr.get("cpu_contention") or {}
        if c:
            load += (
                f" (the worker's loop thread waited for a CPU {c['worker_loop_thread_runqueue_wait_share']:.0%} "
                f"of the time; host {c['host_busy_share']:.0%} busy)"
            )
        note = (
            f"; in {fr['no_neighbour_in_top_k']} no neighbour reached the top {fr.get('k', 20)} "
            f"within {fr['timeout_s']:g} s"
            if fr.get("no_neighbour_in_top_k")
            else ""
        )
        out.append(
            [
                f"freshness {load}: event sent -> watched video gone from that user's list "
                f"({g['n']} of {fr['samples']} samples)",
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
        out.append(
            [
                f"freshness {load}: event sent -> video gone and a neighbour in the list "
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
    for rp in replay_runs(res):
        workers = rp.get("workers", 1)
        cluster = "one worker" if workers == 1 else f"{workers} worker processes"
        if rp.get("minutes") is not None:
            ex = rp.get("exactness", {}).get("exact")
            out.append(
                [
                    f"`recstream replay kuairand --as-fast-as-possible` of {rp['events']:,} interactions to "
                    f"fully materialised state (fresh cluster, {cluster}); Redis = reference: "
                    f"{'yes' if ex else '**NO**'}",
                    f"{rp['minutes']:.2f} min ({_num(rp['events_per_s'])} events/s)",
                    f"the replayer alone {_num(rp.get('replay', {}).get('publisher_s'))} s",
                    "",
                    f"<= {t['replay_minutes']:g} min",
                    _meets(rp["minutes"] <= t["replay_minutes"] and bool(ex)),
                ]
            )
        elif rp.get("error"):
            out.append(
                [f"`recstream replay`, {cluster}", f"error: {str(rp['error'])[:100]}", "", "", "", "**no**"]
            )
    return out


def replay_runs(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each replay run (one per cluster size), the first one first."""
    rp = res.get("replay", {})
    return [rp, *rp.get("more", [])] if rp else []


def _quix_failed(quix: dict[str, Any]) -> str:
    if quix.get("events_per_s_at_most"):
        return (
            f"quixstreams < {_num(quix['events_per_s_at_most'])}/s (stopped unfinished after "
            f"{_num(quix.get('stopped_after_s'))} s)"
        )
    text = " ".join(str(quix.get("error", "not run")).split())  # one line: it goes in a table cell
    return f"quixstreams: {text[:80].replace('|', '/')}"


def failures(res: dict[str, Any]) -> list[str]:
    """What makes the run invalid (not merely slow): state that differs from the reference."""
    bad = []
    ing = res.get("ingest", {})
    if ing and not ing.get("exactness", {}).get("exact"):
        bad.append(
            f"ingest: Redis differs from the reference: {ing.get('exactness', {}).get('diffs', [])[:3]}"
        )
    q = ing.get("quixstreams", {})
    if (
        q
        and not q.get("skipped")
        and not q.get("events_per_s_at_most")  # unfinished: slow, not wrong
        and not (q.get("counts_equal_reference") and q.get("counts_equal_recstream"))
    ):
        bad.append(
            f"quixstreams peer: {q.get('error') or 'per-video counts differ: ' + str(q.get('differing_examples'))}"
        )
    for rp in replay_runs(res):
        if not rp.get("exactness", {}).get("exact"):
            bad.append(
                f"replay ({rp.get('workers', 1)} workers): "
                f"{rp.get('error') or rp.get('exactness', {}).get('diffs', [])[:3]}"
            )
    for stage in ("http", "freshness", "burst"):
        if res.get(stage, {}).get("error"):
            bad.append(f"{stage}: {res[stage]['error']}")
    return bad


def markdown(res: dict[str, Any], serving: bool = False) -> str:
    """The streaming table, then (with `serving`: the README block) serving.md, then als.md."""
    m, v = res["machine"], res["versions"]
    lines = [
        "| benchmark | recstream | peer (same run) | ratio | target | meets |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(res)]
    cfg = res.get("config", {})
    if cfg:
        lines += [
            "",
            f"Workload (`benchmarks/workload.py`): {cfg.get('events', 0):,} events, {cfg.get('users', 0):,} "
            f"users, {cfg.get('videos', 0):,} videos, Zipf {cfg.get('zipf')}, seed {cfg.get('seed')}; "
            "default settings. Ingest and replay times run to the moment the counters completed and what "
            "serving reads in Redis took its final value (polled until unchanged for 6 s, dated to the last "
            "write Redis took before the first poll that saw it, its change count read every 50 ms); the "
            "run counts only when that value equals the from-scratch reference.",
        ]
    trial = " **Trial run (reduced sizes): not the published numbers.**" if res.get("trial") else ""
    lines += [
        "",
        f"{res['date']}, {m['cores']} cores ({m['cpu']}), load average at start "
        f"{m['load_average_at_start'][0]}"
        + (f" (at end {m['load_average_at_end'][0]})" if m.get("load_average_at_end") else "")
        + f"; Python {v['python']}, faust-streaming {v['faust-streaming']}, "
        f"aiokafka {v['aiokafka']}, aiohttp {v['aiohttp']}, Kafka {v.get('kafka_broker')}, "
        f"{res.get('isolation', {}).get('redis', 'redis')}; commit {v.get('git_commit')}"
        f"{' (dirty)' if v.get('git_dirty') else ''}. Command: `{res['command']}`.{trial}",
        "Ratio = recstream / peer (throughput: higher is better; latency: lower is better). Everything "
        "(Kafka, Redis, MongoDB, the worker, the load generator) shares the same machine.",
    ]
    if serving and (RESULTS / "serving.md").exists():
        lines += ["", (RESULTS / "serving.md").read_text().strip()]
    lines += _als_lines()
    return "\n".join(lines) + "\n"


def _als_lines() -> list[str]:
    als = RESULTS / "als.md"
    if als.exists():
        return ["", als.read_text().strip()]
    if (RESULTS / "als.json").exists():
        return ["", "ALS (Spark MLlib vs implicit): see `benchmarks/results/als.json`."]
    return []


def readme_block(res: dict[str, Any] | None) -> str | None:
    """streaming.md's table, serving.md, als.md: whichever results exist (None: nothing to show)."""
    if res is None and (RESULTS / "streaming.json").exists():
        res = json.loads((RESULTS / "streaming.json").read_text())
    if res is not None:
        return markdown(res, serving=True)
    if not (RESULTS / "serving.md").exists():
        return None
    lines = [(RESULTS / "serving.md").read_text().strip(), *_als_lines()]
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
            f"benchmarks/results/streaming.md and serving.md between them.",
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

    q = QUICK if args.quick else {}

    def pick(value: Any, name: str, default: Any) -> Any:
        return value if value is not None else q.get(name, default)

    cfg = BenchConfig(
        events=pick(args.events, "events", 1_000_000),
        users=pick(args.users, "users", 100_000),
        videos=pick(args.videos, "videos", 20_000),
        zipf=args.zipf,
        seed=args.seed,
        quix=not args.no_quix,
        quix_timeout_s=args.quix_timeout,
        http_duration_s=pick(args.http_seconds, "http_seconds", 10),
        http_warmup_s=1 if args.quick else 2,
        http_concurrency=args.concurrency,
        load_generator=args.load_generator,
        freshness_samples=pick(args.freshness_samples, "freshness_samples", 300),
        freshness_background_rate=args.background_rate,
        freshness_via=args.freshness_via,
        burst_seconds=pick(args.burst_seconds, "burst_seconds", 10.0),
        paced_events=pick(args.paced_events, "paced_events", 60_000),
        replay_events=pick(args.replay_events, "replay_events", 1_000_000),
        replay_workers=tuple(int(x) for x in args.replay_workers.split(",") if x.strip()),
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
    say(
        f"streaming benchmarks: {cfg.events:,} events, {cfg.users:,} users, {cfg.videos:,} videos "
        f"(zipf {cfg.zipf}); stages {', '.join(('ingest', *cfg.stages))}; load average {os.getloadavg()[0]:.2f}"
    )
    res.update(run_all(cfg))
    res["seconds"] = round(time.monotonic() - started, 1)
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    profile = res.pop("profile", None)
    if profile:
        (RESULTS / "profile.json").write_text(json.dumps(profile, indent=1) + "\n")
        (RESULTS / "profile.md").write_text(profile_markdown(profile, res))
        say(f"profile summaries: {(RESULTS / 'profile.md').relative_to(ROOT)}, profile.json")
    res["failures"] = failures(res)
    (RESULTS / "streaming.json").write_text(json.dumps(res, indent=2) + "\n")
    table = markdown(res)
    (RESULTS / "streaming.md").write_text(table)
    say(
        f"done in {res['seconds']} s: {(RESULTS / 'streaming.json').relative_to(ROOT)}, "
        f"{(RESULTS / 'streaming.md').relative_to(ROOT)}"
    )
    print(table)
    for line in res["failures"]:
        say(f"!!! INVALID RUN: {line}")
    return res


def run_serving(args: argparse.Namespace) -> int:
    """benchmarks/serving.py in its own process (it seeds ~1 GB into a private Redis and starts
    servers, a worker and a producer); it writes results/serving.json and serving.md itself."""
    script = HERE / "serving.py"
    extra = shlex.split(args.serving_args)
    passed = ["--seed", str(args.seed), "--concurrency", str(args.concurrency)]
    if args.quick:
        passed.append("--quick")
    if args.http_seconds is not None:
        passed += ["--http-seconds", str(args.http_seconds)]
    if args.profile:
        passed.append("--profile")
    if args.keep:
        passed.append("--keep")
    cmd = [str(script.relative_to(ROOT)), *passed, *extra]
    print(f"[bench] serving: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    env = {**os.environ, "RECSTREAM_BENCH_COMMAND": command_line()}
    return subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env).returncode


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
    serving_rc = 0
    if args.only in ("all", "streaming"):
        res = run_streaming(args)
        if res.get("failures"):
            rc = 1
    if args.only in ("all", "serving"):
        serving_rc = run_serving(args)
        rc = serving_rc or rc
    if args.only in ("all", "als"):
        rc = run_als(args) or rc
    if args.quick and not args.no_readme:
        print("--quick: README.md left alone (trial numbers are not for publishing)", file=sys.stderr)
    elif res is not None and res.get("failures") and not args.no_readme:
        print("invalid run (see above): README.md left alone", file=sys.stderr)
    elif serving_rc and not args.no_readme:
        print("the serving benchmark did not complete (see above): README.md left alone", file=sys.stderr)
    elif not args.no_readme:
        block = readme_block(res)  # after serving and ALS, so their tables (if any) are part of the block
        if block is not None:
            update_readme(block)
    return rc


if __name__ == "__main__":
    sys.exit(main())
