"""Real worker processes for end-to-end tests, each cluster isolated by app id, topic prefix, Redis DB
and MongoDB database so that runs never see each other's state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recstream.settings import Settings

_redis_dbs = iter(range(1, 16))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Settings shared by this cluster's workers, plus the worker processes themselves."""

    def __init__(self, base: Settings, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        redis_db = next(_redis_dbs)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTREAM_")}
        self.env.update({
            "RECSTREAM_APP_ID": f"rs-test-{tag}",
            "RECSTREAM_TOPIC_PREFIX": f"rs-test-{tag}",
            "RECSTREAM_REDIS_URL": base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}",
            "RECSTREAM_MONGO_DB": f"rs_test_{tag}",
            "RECSTREAM_DATA_DIR": str(tmp),
            "RECSTREAM_KAFKA_BOOTSTRAP": base.kafka_bootstrap,
            "RECSTREAM_MANAGE_KAFKA": "false", "RECSTREAM_MANAGE_REDIS": "false", "RECSTREAM_MANAGE_MONGO": "false",
            "RECSTREAM_LOG_LEVEL": "warn",
        })
        self.settings = Settings(**{k.removeprefix("RECSTREAM_").lower(): v for k, v in self.env.items()
                                    if k.startswith("RECSTREAM_")})
        self.tmp = tmp
        self.workers: list[WorkerProcess] = []
        import redis

        redis.Redis.from_url(self.settings.redis_url).flushdb()

    def start_worker(self, port: int | None = None) -> WorkerProcess:
        worker = WorkerProcess(self, port or free_port())
        self.workers.append(worker)
        worker.start()
        return worker

    @property
    def url(self) -> str:
        return self.workers[0].url

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def wait_settled(self, timeout: float = 60) -> None:
        """Until every partition of the interactions topic is owned by exactly one worker, no rebalance."""
        topic = f"{self.settings.topic_prefix}.interactions"

        def settled() -> bool:
            healths = [get(w.url + "/health")[1] for w in self.workers]
            owned = [h.get("assigned_partitions", {}).get(topic, 0) for h in healths]
            return not any(h.get("rebalancing") for h in healths) and sum(owned) == \
                self.settings.interactions_partitions and all(owned)
        if not wait_for(settled, timeout=timeout, interval=0.5):
            raise RuntimeError(f"cluster did not settle: {[get(w.url + '/health')[1] for w in self.workers]}")


class WorkerProcess:
    def __init__(self, cluster: Cluster, port: int) -> None:
        self.cluster, self.port = cluster, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = cluster.tmp / f"worker-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        env = {**self.cluster.env, "RECSTREAM_WEB_PORT": str(self.port)}
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "recstream"), "worker"], env=env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                if get(self.url + "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"worker did not become healthy: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def request(method: str, url: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else {"text": raw.decode()})
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, (json.loads(raw) if raw[:1] == b"{" else {"text": raw.decode()})


def get(url: str) -> tuple[int, dict]:
    return request("GET", url)


def post(url: str, body: object) -> tuple[int, dict]:
    return request("POST", url, body)


def wait_for(check, timeout: float = 10.0, interval: float = 0.05):  # noqa: ANN001, ANN201
    """Poll `check()` until it returns a truthy value; return it (or the last value on timeout)."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


@pytest.fixture(scope="module")
def cluster(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker on its own topics."""
    c = Cluster(services, tmp_path_factory.mktemp("cluster"))
    c.start_worker()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cluster2(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers sharing the 8 partitions of their topics."""
    c = Cluster(services, tmp_path_factory.mktemp("cluster2"))
    c.start_worker()
    c.start_worker()
    c.wait_settled()
    yield c
    c.stop()
