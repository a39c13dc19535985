"""Local worker processes for the demo, the end-to-end tests and the benchmarks.

A `Cluster` is a set of `recstream worker` processes sharing one app id. Tests and benchmarks give
each cluster its own topics, Redis DB and MongoDB database so that runs never see each other's state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from recstream.devtools.services.process import wait_until
from recstream.redis_layout import HISTORY_PROGRESS_KEY
from recstream.settings import Settings

T = TypeVar("T")


ISOLATED: list[Settings] = []
"""The settings of every isolated cluster this process created: `delete_isolated_topics` removes their
topics at the end of a test session (a broker that keeps every run's topics runs out of open files)."""


async def delete_topics(settings: Settings) -> None:
    """Delete a deployment's topics: its prefix's (interactions, videos, internal ones) and its app id's
    (Faust's changelogs and repartitions)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from recstream.kafka.config import client_kwargs

    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        tags = (settings.topic_prefix + ".", settings.app_id + "-")
        ours = [t for t in await admin.list_topics() if t.startswith(tags)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def delete_isolated_topics() -> None:
    """Delete the topics of every isolated cluster this process created (best effort; kept when
    RECSTREAM_KEEP_TEST_TOPICS is set, to look into a failure)."""
    import asyncio

    if os.environ.get("RECSTREAM_KEEP_TEST_TOPICS"):
        return

    for settings in ISOLATED:
        try:
            asyncio.run(delete_topics(settings))
        except Exception:  # noqa: BLE001 - cleanup: a broker already gone has nothing to delete
            pass
    ISOLATED.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method: str, url: str, body: object | None = None, timeout: float = 10) -> tuple[int, Any]:
    """A tiny synchronous JSON HTTP client: returns (status, parsed body). The standard library's, not
    aiohttp: its callers are synchronous tests and benchmarks, some of them on a thread whose event loop
    is already running (Playwright's), where an aiohttp call could not run its own loop."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else {"text": raw.decode()})
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, (json.loads(raw) if raw[:1] == b"{" else {"text": raw.decode()})


def get(url: str) -> tuple[int, Any]:
    return request("GET", url)


def post(url: str, body: object) -> tuple[int, Any]:
    return request("POST", url, body)


def wait_for(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `check()` until it returns a truthy value; return it (or the last value on timeout). An
    exception from `check()` ends the wait."""
    return wait_until(check, bool, timeout, interval)


class Cluster:
    """Environment shared by this cluster's workers, plus the worker processes themselves."""

    def __init__(
        self,
        base: Settings,
        data_dir: Path,
        *,
        isolated: bool = True,
        redis_db: int = 1,
        log_level: str = "warn",
        env: dict[str, str] | None = None,
    ) -> None:
        """`env`: more `RECSTREAM_*` settings for every process of this cluster (e.g. partition counts,
        standby replicas); they are in `self.settings` too."""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTREAM_")}
        self.env.update(
            {
                "RECSTREAM_DATA_DIR": str(data_dir),
                "RECSTREAM_KAFKA_BOOTSTRAP": base.kafka_bootstrap,
                "RECSTREAM_REDIS_URL": base.redis_url,
                "RECSTREAM_MONGO_URL": base.mongo_url,
                "RECSTREAM_LOG_LEVEL": log_level,
            }
        )
        if isolated:
            tag = uuid.uuid4().hex[:8]
            self.env.update(
                {
                    "RECSTREAM_APP_ID": f"rs-test-{tag}",
                    "RECSTREAM_TOPIC_PREFIX": f"rs-test-{tag}",
                    "RECSTREAM_REDIS_URL": base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}",
                    "RECSTREAM_MONGO_DB": f"rs_test_{tag}",
                }
            )
        self.env.update(env or {})
        self.settings = Settings(
            **{
                k.removeprefix("RECSTREAM_").lower(): v
                for k, v in self.env.items()
                if k.startswith("RECSTREAM_")
            }
        )
        self.data_dir = data_dir
        self.workers: list[WorkerProcess] = []
        self.webs: list[WorkerProcess] = []
        if isolated:
            ISOLATED.append(self.settings)
            redis.Redis.from_url(self.settings.redis_url).flushdb()

    def start_worker(self, port: int | None = None, command: list[str] | None = None) -> WorkerProcess:
        """Start a worker: `recstream worker`, or another command such as `faust -A recstream.streaming.app worker`."""
        worker = WorkerProcess(self, port or free_port(), command)
        self.workers.append(worker)
        worker.start()
        return worker

    def start_web(
        self, port: int | None = None, processes: int = 1, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        """Start the web role (`recstream web`): the API without agents, `processes` sharing a port;
        `env` adds to this cluster's environment (e.g. API keys)."""
        port = port or free_port()
        web = WorkerProcess(
            self,
            port,
            [
                str(Path(sys.executable).parent / "recstream"),
                "web",
                "--port",
                str(port),
                "--processes",
                str(processes),
            ],
            env,
        )
        self.webs.append(web)
        web.start()
        return web

    @property
    def url(self) -> str:
        return self.workers[0].url

    @property
    def urls(self) -> list[str]:
        """Every process serving the API: the workers, then the web role's."""
        return [w.url for w in self.workers + self.webs]

    def stop(self) -> None:
        for w in self.webs + self.workers:
            w.stop()

    def wait_settled(self, timeout: float = 60) -> None:
        """Until every interactions partition is owned by exactly one worker, and none rebalances."""
        topic = f"{self.settings.topic_prefix}.interactions"

        def settled() -> bool:
            healths = [get(w.url + "/health")[1] for w in self.workers]
            owned = [h.get("assigned_partitions", {}).get(topic, 0) for h in healths]
            return (
                not any(h.get("rebalancing") for h in healths)
                and sum(owned) == self.settings.interactions_partitions
                and all(owned)
            )

        if not wait_for(settled, timeout=timeout, interval=0.5):
            raise RuntimeError(f"cluster did not settle: {[get(w.url + '/health')[1] for w in self.workers]}")


class WorkerProcess:
    """One `recstream worker` process with its web views on `port`; log beside the data dir."""

    def __init__(
        self, cluster: Cluster, port: int, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.cluster, self.port, self.extra_env = cluster, port, env or {}
        self.command = command or [str(Path(sys.executable).parent / "recstream"), "worker"]
        self.url = f"http://127.0.0.1:{port}"
        self.log = cluster.data_dir / f"worker-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        env = {**self.cluster.env, "RECSTREAM_WEB_PORT": str(self.port), **self.extra_env}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; log {self.log}:\n{self.log.read_text()[-3000:]}")
            try:
                return get(self.url + "/health")[0] == 200
            except OSError:  # not listening yet
                return False

        if wait_for(healthy, timeout=timeout, interval=0.3):
            return
        raise RuntimeError(f"worker did not become healthy; log {self.log}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class ProgressSampler:
    """Samples the history agent's per-partition progress in Redis (`progress:history`: interactions
    partition -> the last offset it applied, moved after every batch) every `interval` seconds, to time a
    rebalance from outside: while events flow to every partition, a partition's longest pause between two
    advances is how long it went unprocessed. `with ProgressSampler(url, partitions) as s: ...`."""

    KEY = HISTORY_PROGRESS_KEY

    def __init__(self, redis_url: str, partitions: int, interval: float = 0.025) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.partitions, self.interval = partitions, interval
        self.samples: list[tuple[float, dict[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            raw = self.client.hgetall(self.KEY)
            self.samples.append((time.monotonic(), {int(p): int(o) for p, o in raw.items()}))
            time.sleep(self.interval)

    def __enter__(self) -> ProgressSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def latest(self) -> dict[int, int]:
        return dict(self.samples[-1][1]) if self.samples else {}

    def wait_all_advanced(self, timeout: float = 60) -> None:
        """Until every partition advanced past where it is now (so the samples cover its resumption)."""
        start = self.latest()

        def advanced() -> bool:
            now = self.latest()
            return all(now.get(p, -1) > start.get(p, -1) for p in range(self.partitions))

        if wait_for(advanced, timeout=timeout, interval=self.interval):
            return
        now = self.latest()
        stuck = [p for p in range(self.partitions) if now.get(p, -1) <= start.get(p, -1)]
        raise AssertionError(f"partitions {stuck} not processed for {timeout:.0f} s")

    def handover(self, t0: float, t1: float) -> dict[str, float]:
        """Between t0 (the change: a worker started or stopped) and t1: the longest any partition went
        without an advance (`pause_s`; a pause that began shortly before t0 counts whole), and the time
        from t0 until the last partition to resume advanced again (`resumed_after_s`)."""
        pause, resumed = 0.0, t0
        for p in range(self.partitions):
            last_change: float | None = None
            prev: int | None = None
            longest = (0.0, t0)
            for t, offsets in self.samples:
                value = offsets.get(p)
                if value != prev:
                    if last_change is not None and t0 < t <= t1 and t - last_change > longest[0]:
                        longest = (t - last_change, t)
                    last_change, prev = t, value
            pause, resumed = max(pause, longest[0]), max(resumed, longest[1])
        return {"pause_s": round(pause, 3), "resumed_after_s": round(resumed - t0, 3)}
