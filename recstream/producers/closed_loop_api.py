"""The recstream HTTP API as the closed loop uses it: one aiohttp session, the write key when there is
one, batched posts, and the waits until the API serves what the loop needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryError, retry_if_not_result, stop_after_delay, wait_fixed

if TYPE_CHECKING:
    import aiohttp

    from recstream.records import Interaction, Video

POST_BATCH = 1000
POLL_S = 0.5


class LoopApi:
    """`async with LoopApi(url, key) as api:`; every answer other than the one expected raises
    RuntimeError with the status and the start of the body."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 60.0) -> None:
        self.base = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LoopApi:
        # Imported here: every `recstream` command imports this module (through the simulate flags),
        # and aiohttp takes a fifth of a second to import.
        import aiohttp

        # The write key: the loop's writes (and reads) need it when the server has keys.
        headers = {"X-API-Key": self.api_key} if self.api_key is not None else {}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=headers
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._session is not None
        await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use LoopApi in `async with`"
        return self._session

    async def post_videos(self, videos: Sequence[Video]) -> None:
        await self._post("/videos", "videos", videos)

    async def post_events(self, events: Sequence[Interaction]) -> None:
        await self._post("/events", "events", events)

    async def _post(self, path: str, key: str, records: Sequence[BaseModel]) -> None:
        url = self.base + path
        for start in range(0, len(records), POST_BATCH):
            batch = records[start : start + POST_BATCH]
            body = {key: [r.model_dump(mode="json", exclude_none=True) for r in batch]}
            async with self.session.post(url, json=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"POST {url} -> {resp.status}: {(await resp.text())[:300]}")

    async def recommendations(self, user: str, k: int) -> dict[str, Any]:
        """The answer to `GET /recommendations/{user}?k=`, not a preview: serving counts it as an
        impression, as it does a feed's request."""
        async with self.session.get(f"{self.base}/recommendations/{user}", params={"k": k}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET /recommendations -> {resp.status}: {(await resp.text())[:300]}")
            return await resp.json()

    async def _get_or_none(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON answer, or None when the status is not 200 (not ready yet)."""
        async with self.session.get(self.base + path, params=params) as resp:
            return await resp.json() if resp.status == 200 else None

    async def wait_ready(self, probe_user: str, timeout_s: float = 90.0) -> None:
        """Until the worker has digested some of the warm-up: trending is non-empty and a user gets a list
        (a worker that has just started may not own its partitions yet)."""

        async def ready() -> bool:
            trending = await self._get_or_none("/trending", {"k": 1})
            recs = await self._get_or_none(f"/recommendations/{probe_user}", {"k": 1})
            return bool(trending and trending.get("items") and recs and recs.get("items"))

        try:
            await _poll(ready, timeout_s)
        except RetryError:
            raise RuntimeError(
                f"the API at {self.base} served no trending videos or recommendations after the warm-up"
            ) from None

    async def wait_served(self, version: str, users: list[str], timeout_s: float = 60.0) -> None:
        """Until an answer that uses ALS names the new version (serving polls for it every second)."""

        async def served() -> bool:
            for user in users[:20]:
                answer = await self._get_or_none(f"/recommendations/{user}", {"k": 1, "preview": "true"})
                if answer is not None and answer.get("model_version") == version:
                    return True
            return False

        try:
            await _poll(served, timeout_s)
        except RetryError:
            raise RuntimeError(
                f"the API at {self.base} did not serve model {version} within {timeout_s:.0f} s"
            ) from None


async def _poll(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Await `check()` every POLL_S until it is true; RetryError after `timeout_s`."""
    await AsyncRetrying(
        stop=stop_after_delay(timeout_s), wait=wait_fixed(POLL_S), retry=retry_if_not_result(bool)
    )(check)
