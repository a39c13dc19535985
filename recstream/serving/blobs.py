"""Durable model blobs in MongoDB: each version's named byte strings (factors, id maps, meta), in chunks.

Collection `model_chunks`, one document per chunk of at most 4 MiB:
`{_id: "{version}/{blob}/{seq}", version, blob, seq, data}`; a blob is its chunks' `data` in `seq` order.

Why chunks cut here and not GridFS (pymongo's `gridfs`): the local MongoDB-protocol server (nx-27017)
answers a GridFS chunk query with every remaining chunk of the file in one reply, so a file larger than
its 48 MB message limit cannot be read back: `pymongo.errors.ProtocolError: Message length (51211636) is
larger than server max message size (48000000)` for a 51.2 MB blob (rank-64 user factors of 200,000
users; rank 128, which the tuner tries, gets there at 94,000). Plain queries on this collection come
back in batches, so any blob size reads back.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymongo import ASCENDING
from pymongo.database import Database

CHUNKS = "model_chunks"
CHUNK_BYTES = 4 * 1024 * 1024  # documents stay far below the server's message limit


class BlobStore:
    """Every version's blobs, kept until deleted. Versions are written once: `put` then `get`/`delete`."""

    def __init__(self, db: Database, collection: str = CHUNKS) -> None:
        self.collection = db[collection]

    def ensure_indexes(self) -> None:
        self.collection.create_index([("version", ASCENDING), ("blob", ASCENDING), ("seq", ASCENDING)])

    def put(self, version: str, blobs: Mapping[str, bytes]) -> None:
        """Store a version's blobs. Idempotent: a retried `put` rewrites the same chunks."""
        for blob, data in blobs.items():
            # An empty blob still gets one (empty) chunk, so that `get` returns it.
            for seq, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES)):
                chunk_id = f"{version}/{blob}/{seq}"
                chunk = {
                    "_id": chunk_id,
                    "version": version,
                    "blob": blob,
                    "seq": seq,
                    "data": data[start : start + CHUNK_BYTES],
                }
                # One write per chunk keeps each wire message small on the MongoDB-protocol server.
                self.collection.replace_one({"_id": chunk_id}, chunk, upsert=True)

    def get(self, version: str) -> dict[str, bytes]:
        """A version's blobs by name; empty when it has none (never stored, or deleted)."""
        chunks: dict[str, list[bytes]] = {}
        cursor = self.collection.find({"version": version}).sort([("blob", ASCENDING), ("seq", ASCENDING)])
        for doc in cursor:
            chunks.setdefault(doc["blob"], []).append(doc["data"])
        return {blob: b"".join(parts) for blob, parts in chunks.items()}

    def delete(self, version: str) -> None:
        self.collection.delete_many({"version": version})
