"""The ALS model registry: every version in MongoDB, the active one hot in Redis.

Redis (hot, what serving reads), under a namespace `ns` (default "model"):

- `{ns}:active`                  the active version (a short string): the one key serving polls
- `{ns}:{version}:meta`          JSON: params, metrics, data range, shapes
- `{ns}:{version}:item_factors`  float32 little-endian bytes, row-major (n_items x rank)
- `{ns}:{version}:user_factors`  float32 little-endian bytes, row-major (n_users x rank)
- `{ns}:{version}:item_ids`      JSON list: row i of item_factors is video item_ids[i]
- `{ns}:{version}:user_ids`      JSON list: row i of user_factors is user user_ids[i]
- `{ns}:lock:train`              the training lock (recstream.serving.training_lock)

A version's keys are written first and never change; activation is then one `SET {ns}:active`, so a
reader sees either the old model or the new one, never a mix. The previous version's keys get a TTL
(10 minutes, for readers still loading it; a rollback reloads any version from MongoDB).

MongoDB (durable, every version kept): collection `models` (one document per version: params,
metrics, gate decision, status), and the same five blobs in recstream.serving.blobs.

Serving reads the active model with the async readers at the end (`get_active_version`,
`load_version`): they read the Redis layout above, so they live beside the code that writes it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
import redis.asyncio as aioredis
from pymongo import ASCENDING, DESCENDING, MongoClient

from recstream.serving.blobs import BlobStore
from recstream.serving.training_lock import hold
from recstream.settings import Settings

DEFAULT_NAMESPACE = "model"
MODELS = "models"
PREVIOUS_VERSION_TTL_S = 600  # readers mid-load finish; older versions come back from MongoDB
BLOBS = ("meta", "item_factors", "user_factors", "item_ids", "user_ids")


class ModelStoreError(Exception):
    """The registry cannot do what was asked (unknown version, no stored factors)."""


def active_key(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}:active"


def blob_key(version: str, blob: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}:{version}:{blob}"


def new_version(now_ms: int | None = None) -> str:
    """Sortable by time, unique across concurrent trainers: 20261126T084500Z-3fa2."""
    t = time.gmtime((now_ms if now_ms is not None else time.time() * 1000) / 1000)
    return time.strftime("%Y%m%dT%H%M%SZ", t) + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class ModelArtifact:
    """A trained model as serving needs it. `meta` is JSON-serialisable (params, metrics, data range)."""

    version: str
    user_ids: list[str]
    item_ids: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    meta: Mapping[str, Any]

    def blobs(self) -> dict[str, bytes]:
        meta = {
            **self.meta,
            "version": self.version,
            "rank": int(self.item_factors.shape[1]),
            "n_users": len(self.user_ids),
            "n_items": len(self.item_ids),
            "dtype": "<f4",
        }
        return {
            "meta": json.dumps(meta).encode(),
            "item_factors": np.ascontiguousarray(self.item_factors, dtype="<f4").tobytes(),
            "user_factors": np.ascontiguousarray(self.user_factors, dtype="<f4").tobytes(),
            "item_ids": json.dumps(self.item_ids).encode(),
            "user_ids": json.dumps(self.user_ids).encode(),
        }

    @classmethod
    def from_blobs(cls, version: str, blobs: Mapping[str, bytes]) -> ModelArtifact:
        meta = json.loads(blobs["meta"])
        rank = int(meta["rank"])
        items = np.frombuffer(blobs["item_factors"], dtype="<f4").reshape(-1, rank)
        users = np.frombuffer(blobs["user_factors"], dtype="<f4").reshape(-1, rank)
        return cls(
            version=version,
            user_ids=json.loads(blobs["user_ids"]),
            item_ids=json.loads(blobs["item_ids"]),
            user_factors=users,
            item_factors=items,
            meta=meta,
        )


def _jsonable(value: Any) -> Any:
    """numpy scalars and tuples out, so the registry document is plain BSON/JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class ModelRegistry:
    """Synchronous registry client for the trainer (Spark's driver is not an asyncio program)."""

    def __init__(self, settings: Settings, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.namespace = namespace
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=False)
        self.mongo = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
        self.db = self.mongo[settings.mongo_db]
        self.blobs = BlobStore(self.db)

    def close(self) -> None:
        self.redis.close()
        self.mongo.close()

    def ensure_indexes(self) -> None:
        self.db[MODELS].create_index([("namespace", ASCENDING), ("created_at", DESCENDING)])
        self.blobs.ensure_indexes()

    # --- reading ---------------------------------------------------------------------------
    def active_version(self) -> str | None:
        raw = self.redis.get(active_key(self.namespace))
        return raw.decode() if raw else None

    def get(self, version: str) -> dict[str, Any] | None:
        """The registry document of a version (params, metrics, gate, status)."""
        return self.db[MODELS].find_one({"_id": version, "namespace": self.namespace})

    def versions(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        cursor = self.db[MODELS].find({"namespace": self.namespace}).sort([("created_at", DESCENDING)])
        return list(cursor.limit(limit))

    def load(self, version: str) -> ModelArtifact:
        """A version's factors and id maps from the durable registry (MongoDB)."""
        blobs = self.blobs.get(version)
        if not blobs.keys() >= set(BLOBS):
            raise ModelStoreError(f"model version {version!r} has no stored factors")
        return ModelArtifact.from_blobs(version, blobs)

    # --- writing ---------------------------------------------------------------------------
    def register(self, artifact: ModelArtifact, document: Mapping[str, Any]) -> None:
        """Keep a version for good: its blobs, then its document (so a document never points at
        missing blobs)."""
        self.blobs.put(artifact.version, artifact.blobs())
        doc = _jsonable({**document, "_id": artifact.version, "namespace": self.namespace})
        self.db[MODELS].replace_one({"_id": artifact.version}, doc, upsert=True)

    def activate(self, artifact: ModelArtifact) -> str | None:
        """Make `artifact` the served model; returns the version it replaced.

        The versioned keys go first, in one MULTI/EXEC; the switch is the single SET afterwards.
        """
        ns, version = self.namespace, artifact.version
        previous = self.active_version()
        pipe = self.redis.pipeline(transaction=True)
        for blob, data in artifact.blobs().items():
            pipe.set(blob_key(version, blob, ns), data)
        pipe.execute()
        self.redis.set(active_key(ns), version)
        now = int(time.time() * 1000)
        models = self.db[MODELS]
        models.update_one({"_id": version}, {"$set": {"status": "active", "activated_at": now}})
        if previous and previous != version:
            for blob in BLOBS:
                self.redis.expire(blob_key(previous, blob, ns), PREVIOUS_VERSION_TTL_S)
            models.update_one({"_id": previous}, {"$set": {"status": "retired", "retired_at": now}})
        return previous

    def activate_version(self, version: str) -> str | None:
        """Roll back (or forward) to any registered version."""
        if self.get(version) is None:
            raise ModelStoreError(f"no model version {version!r} in namespace {self.namespace!r}")
        return self.activate(self.load(version))

    def prune_factors(self, keep: int) -> list[str]:
        """Drop the stored blobs of all but the `keep` newest versions (never the active one); their
        documents and metrics stay. Returns the versions pruned."""
        active = self.active_version()
        docs = self.db[MODELS].find(
            {"namespace": self.namespace, "factors_pruned": {"$ne": True}}, {"_id": 1}
        )
        versions = [d["_id"] for d in docs.sort([("created_at", DESCENDING)])]
        pruned = [v for v in versions[keep:] if v != active]
        for version in pruned:
            self.blobs.delete(version)
            self.db[MODELS].update_one({"_id": version}, {"$set": {"factors_pruned": True}})
        return pruned

    def delete_namespace(self) -> None:
        """Remove every version of this namespace from Redis and MongoDB (tests, experiments)."""
        versions = [d["_id"] for d in self.db[MODELS].find({"namespace": self.namespace}, {"_id": 1})]
        for version in versions:
            self.blobs.delete(version)
            self.redis.delete(*(blob_key(version, b, self.namespace) for b in BLOBS))
        self.db[MODELS].delete_many({"namespace": self.namespace})
        self.redis.delete(active_key(self.namespace), self.lock_key)

    # --- the training lock -----------------------------------------------------------------
    @property
    def lock_key(self) -> str:
        return f"{self.namespace}:lock:train"

    def training_lock(self, ttl_s: float = 300.0, holder: str = "") -> AbstractContextManager[None]:
        """At most one training of this namespace at a time: recstream.serving.training_lock (raises its
        LockHeld when another training holds the lock)."""
        return hold(self.redis, self.lock_key, ttl_s, holder)


# --- serving: async reads of the active model --------------------------------------------------
async def get_active_version(client: aioredis.Redis, namespace: str = DEFAULT_NAMESPACE) -> str | None:
    raw = await client.get(active_key(namespace))
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else raw


async def load_version(
    client: aioredis.Redis, version: str, namespace: str = DEFAULT_NAMESPACE
) -> ModelArtifact | None:
    """One version's blobs in one round trip; None when they are gone (expired, deleted).

    `client` must be created with decode_responses=False: the factors are raw bytes.
    """
    values = await client.mget([blob_key(version, b, namespace) for b in BLOBS])
    if any(v is None for v in values):
        return None
    return ModelArtifact.from_blobs(version, dict(zip(BLOBS, values, strict=True)))
