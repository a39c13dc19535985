"""The model registry's parts on the real services: the blob store (MongoDB) and the training lock
(Redis). The registry as training uses it is tests/integration/test_training.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pymongo import MongoClient

from recstream.serving.blobs import BlobStore
from recstream.serving.training_lock import LockHeld, hold
from recstream.settings import Settings

RECSTREAM = Path(sys.executable).with_name("recstream")


@pytest.fixture
def blob_store(services: Settings) -> Iterator[BlobStore]:
    client = MongoClient(services.mongo_url, serverSelectionTimeoutMS=5000)
    store = BlobStore(client[services.mongo_db], collection=f"test_chunks_{uuid.uuid4().hex[:8]}")
    store.ensure_indexes()
    yield store
    store.collection.drop()
    client.close()


@pytest.fixture
def client(services: Settings) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(services.redis_url)
    yield c
    c.close()


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    yield name
    client.delete(name)


def test_blobs_read_back_past_the_servers_message_limit(blob_store: BlobStore) -> None:
    """51.2 MB: a rank-64 user-factor blob of 200,000 users, above the 48 MB a reply of the local
    MongoDB-protocol server may carry (what ruled GridFS out, see recstream/serving/blobs.py)."""
    blobs = {"user_factors": os.urandom(200_000 * 64 * 4), "meta": b'{"rank": 64}', "user_ids": b""}
    blob_store.put("v1", blobs)
    blob_store.put("v2", {"meta": b"{}"})
    assert blob_store.get("v1") == blobs
    blob_store.delete("v1")
    assert blob_store.get("v1") == {}
    assert blob_store.get("v2") == {"meta": b"{}"}


def test_a_second_trainer_is_told_who_holds_the_lock(client: redis.Redis, key: str) -> None:
    with hold(client, key, ttl_s=30, holder="first"):
        with pytest.raises(LockHeld, match=f"another training holds {key}: first/"):
            with hold(client, key, ttl_s=30, holder="second"):
                pass
        assert 0 < client.pttl(key) <= 30_000
    assert not client.exists(key)


def test_a_crashed_trainers_lock_expires(client: redis.Redis, key: str) -> None:
    # A holder that never releases nor renews (its process died): only the expiry frees the lock.
    client.lock(key, timeout=0.5).acquire(token="crashed/0/0")
    with pytest.raises(LockHeld, match="crashed"):
        with hold(client, key, ttl_s=30):
            pass
    time.sleep(0.7)
    with hold(client, key, ttl_s=30):
        pass


def test_the_lock_is_renewed_while_training_runs(client: redis.Redis, key: str) -> None:
    with hold(client, key, ttl_s=0.6, holder="long"):
        time.sleep(1.5)  # well past the expiry: renewed every ttl/3
        assert client.get(key).startswith(b"long/")
        with pytest.raises(LockHeld):
            with hold(client, key, ttl_s=0.6):
                pass
    assert not client.exists(key)


def test_a_lost_lock_is_not_released_from_its_new_holder(client: redis.Redis, key: str) -> None:
    with hold(client, key, ttl_s=30, holder="stalled"):
        client.set(key, "next/0/0", px=30_000)  # as if it had expired and another trainer took it
    assert client.get(key) == b"next/0/0"


def test_recstream_train_skips_its_round_while_another_holds_the_lock(
    client: redis.Redis, tmp_path: Path
) -> None:
    namespace = f"test-model-{uuid.uuid4().hex[:8]}"
    with hold(client, f"{namespace}:lock:train", ttl_s=60, holder="other"):
        run = subprocess.run(
            [RECSTREAM, "train", "--namespace", namespace, "--dataset", str(tmp_path / "log.jsonl")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 3, run.stderr  # EXIT_LOCKED: a scheduler skips the round
    assert f"[train] skipped: another training holds {namespace}:lock:train: other/" in run.stdout
