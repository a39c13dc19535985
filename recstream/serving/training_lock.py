"""One training round at a time, across processes and hosts: redis-py's `Lock` on one Redis key.

The lock expires `ttl_s` after its last renewal, so a trainer that crashed (or lost its host) frees it;
while the holder is alive a thread renews it every ttl/3, so a training longer than `ttl_s` keeps it
(redis-py checks ownership and resets the expiry atomically, but does not renew by itself).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockNotOwnedError


class LockHeld(Exception):
    """Another training holds the lock."""


@contextmanager
def hold(client: redis.Redis, key: str, ttl_s: float, holder: str = "") -> Iterator[None]:
    """Hold `key` for the block, or raise LockHeld at once (a second trainer skips its round rather
    than queue behind the first)."""
    # The token is the lock's value: whoever finds the lock taken is told who holds it, since when.
    token = f"{holder or 'trainer'}/{secrets.token_hex(8)}/{int(time.time())}"
    # thread_local=False: the renewal thread must renew with the token this thread acquired.
    lock = client.lock(key, timeout=ttl_s, thread_local=False)
    if not lock.acquire(blocking=False, token=token):
        current = client.get(key)
        shown = current.decode() if isinstance(current, bytes) else current
        raise LockHeld(f"another training holds {key}: {shown or '?'}")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                lock.reacquire()
            except LockNotOwnedError:  # expired (this process stalled past ttl_s): nothing to renew
                return
            except redis.RedisError:  # a blip: the next renewal (or the expiry) settles it
                pass

    thread = threading.Thread(target=renew, name="train-lock-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            lock.release()
        except LockNotOwnedError:  # expired meanwhile, maybe taken by another trainer: not ours to free
            pass
