"""Training on a Spark standalone cluster (one master, two workers of one core each) started on this
machine with pyspark's own `spark-class` launcher: `spark-submit training/als_job.py` runs the job with
two executors, one per worker, trains from the Kafka log and publishes a model, which the web role
(`recstream web`) then serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recstream.devtools.devcluster import Cluster, free_port, get, wait_for
from recstream.serving.model_store import ModelRegistry
from recstream.settings import Settings
from recstream.training.session import connector_jars

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spark_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("spark")
    env = {**os.environ, "SPARK_HOME": str(Path(__import__("pyspark").__file__).parent)}
    port = free_port()
    procs = []

    def launch(name: str, *args: str) -> None:
        with open(tmp / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "spark-class"), *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    launch(
        "master",
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        str(free_port()),
    )
    url = f"spark://127.0.0.1:{port}"
    assert wait_for(lambda: "ALIVE" in (tmp / "master.log").read_text(errors="replace"), timeout=60)
    for i in (1, 2):
        launch(
            f"worker{i}",
            "org.apache.spark.deploy.worker.Worker",
            url,
            "--host",
            "127.0.0.1",
            "--cores",
            "1",
            "--memory",
            "1g",
            "--webui-port",
            str(free_port()),
            "--work-dir",
            str(tmp / f"work{i}"),
        )
    assert wait_for(
        lambda: (tmp / "master.log").read_text(errors="replace").count("Registering worker") >= 2, timeout=60
    )
    yield url, tmp
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def test_train_on_a_standalone_cluster(
    services: Settings, spark_master: tuple[str, Path], tmp_path: Path
) -> None:
    url, spark_dir = spark_master
    cluster = Cluster(services, tmp_path, redis_db=13)  # no worker: only its isolated topics and stores
    env = {**cluster.env, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    sim = subprocess.run(
        [
            str(BIN / "recstream"),
            "simulate",
            "--users",
            "120",
            "--videos",
            "80",
            # Paced: at --rate 0 the batched publisher sends 3,000 events within ~30 ms, and a
            # simulated user's views then share milliseconds (their order is lost to training).
            "--rate",
            "10000",
            "--events",
            "3000",
            "--seed",
            "5",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sim.returncode == 0, sim.stderr[-2000:]
    jars = connector_jars(services.local_dir / "spark-jars")
    assert jars, "Spark's Kafka connector is not installed (make install)"
    started = time.time()
    # Two executors of one core, one on each worker (each worker offers one core).
    train = subprocess.run(
        [
            str(BIN / "spark-submit"),
            "--master",
            url,
            "--total-executor-cores",
            "2",
            "--executor-cores",
            "1",
            "--executor-memory",
            "512m",
            "--driver-memory",
            "1g",
            "--jars",
            ",".join(jars),
            str(ROOT / "training" / "als_job.py"),
            "--rank",
            "8",
            "--max-iter",
            "4",
            "--tune-trials",
            "1",
            "--force",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    result = json.loads(train.stdout.strip().splitlines()[-1])
    # Forced: this test is about the cluster; on 3,000 events the gate compares ALS and popularity on ~35
    # test users (an interval of +-0.1), a coin flip that tests/integration/test_training.py covers.
    assert result["activated"] is True and result["gate"]["reason"] == "forced"
    assert result["data"]["events"] >= 3000 and result["metrics"]["users"] > 0
    log = (spark_dir / "master.log").read_text(errors="replace")
    assert "Registering app" in log and log.count("Launching executor") >= 2
    for i in (1, 2):  # each worker ran one of the two executors
        assert "Asked to launch executor" in (spark_dir / f"worker{i}.log").read_text(errors="replace"), i
    registry = ModelRegistry(cluster.settings)
    try:
        assert registry.active_version() == result["version"]
        assert registry.get(result["version"])["metrics"]["ndcg@10"] >= 0
    finally:
        registry.close()
    assert time.time() - started < 400

    # The web role serves the published model: its state and its answers name the version. (ALS items in
    # the answers need a worker's catalog and histories: tests/integration/test_als_serving.py.)
    web = cluster.start_web()
    try:
        health = wait_for(
            lambda: (lambda h: h if h.get("serving_state", {}).get("model_version") else None)(
                get(web.url + "/health")[1]
            ),
            timeout=30,
        )
        assert health and health["serving_state"]["model_version"] == result["version"], health
        status, body = get(f"{web.url}/recommendations/u1?k=10&preview=true")
        assert status == 200 and body["model_version"] == result["version"], body
    finally:
        web.stop()
