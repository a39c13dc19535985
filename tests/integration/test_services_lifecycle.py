"""`recstream services`: idempotent up, honest status, down leaves nothing of ours behind.

Runs a second, private set of services on other ports and in a temporary data dir, so the shared
services the rest of the suite uses are never touched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [str(Path(sys.executable).parent / "recstream")]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTREAM_")}
    env.update(
        {
            "RECSTREAM_DATA_DIR": str(tmp_path / "data"),
            "RECSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
            "RECSTREAM_REDIS_URL": "redis://127.0.0.1:16379/0",
            "RECSTREAM_MONGO_URL": "mongodb://127.0.0.1:27117/",
            "RECSTREAM_MANAGE_KAFKA": "true",
            "RECSTREAM_MANAGE_REDIS": "true",
            "RECSTREAM_MANAGE_MONGO": "true",
            "RECSTREAM_KAFKA_HEAP": "384m",
        }
    )
    env.update(extra)
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=180)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_up_twice_status_down(tmp_path: Path) -> None:
    env = _env(tmp_path)
    try:
        first = _run(env, "services", "up")
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("started") == 3

        second = _run(env, "services", "up")
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("already running") == 3

        status = _run(env, "services", "status", "--json")
        rows = {r["service"]: r for r in json.loads(status.stdout)}
        assert status.returncode == 0
        assert all(r["healthy"] and r["pid"] for r in rows.values()), rows
        assert rows["kafka"]["address"] == "127.0.0.1:19092"
        # The Kafka service is the real broker: a JVM running kafka.Kafka.
        cmdline = Path(f"/proc/{rows['kafka']['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"kafka.Kafka" in cmdline and Path(cmdline[0].decode()).name == "java"
        pids = [r["pid"] for r in rows.values()]
    finally:
        down = _run(env, "services", "down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 3
    assert not any(_alive(pid) for pid in pids)
    assert not any(_listening(p) for p in (19092, 19093, 16379, 27117))
    again = _run(env, "services", "status", "--json")
    assert again.returncode == 1
    assert not any(r["pid"] for r in json.loads(again.stdout))


def test_port_taken_by_a_stranger_is_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path, RECSTREAM_MANAGE_KAFKA="false", RECSTREAM_MANAGE_MONGO="false")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 16379))
        squatter.listen()
        result = _run(env, "services", "up")
    assert result.returncode == 2
    assert "redis" in result.stderr and "127.0.0.1:16379" in result.stderr
    assert "not ours" in result.stderr and "redis.log" in result.stderr
    assert "kafka: external" in result.stdout


@pytest.mark.parametrize("service", ["kafka", "redis", "mongo"])
def test_external_service_is_left_alone(tmp_path: Path, service: str) -> None:
    env = _env(tmp_path, **{f"RECSTREAM_MANAGE_{s.upper()}": "false" for s in ("kafka", "redis", "mongo")})
    result = _run(env, "services", "up")
    assert result.returncode == 0
    assert f"{service}: external" in result.stdout
