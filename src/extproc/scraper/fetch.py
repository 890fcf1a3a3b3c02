"""Fetching a /metrics page: the transport interface and the aiohttp implementation (an option;
the default is `extproc.scraper.http.HttpFetcher`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import aiohttp

from extproc.scraper.errors import FetchError, FetchStatusError

__all__ = ["AiohttpFetcher", "CallbackFetcher", "Completion", "FetchError", "Fetcher"]

# Loopback and cluster networks are fast; compression would only cost CPU on both sides.
_HEADERS = {"Accept-Encoding": "identity", "Accept": "text/plain"}


class Fetcher(Protocol):
    """Fetch one URL's body; raise FetchError (or any exception) when that fails."""

    async def fetch(self, url: str) -> bytes: ...

    def forget(self, url: str) -> None:
        """`url` will not be fetched again (its endpoint left): release what is kept for it."""
        ...

    async def close(self) -> None: ...


# How a started fetch ends: (body, None) for a 200, else (None, the FetchError).
Completion = Callable[[bytes | None, FetchError | None], None]


@runtime_checkable
class CallbackFetcher(Fetcher, Protocol):
    """A fetcher that can also run a fetch without a task: the scrape loop's fast path."""

    def start_fetch(self, url: str, on_done: Completion) -> bool:
        """Start fetching `url` and return True; `on_done` is called once when it ends.
        False when it cannot start that way now (no idle connection): use `fetch`."""
        ...


class AiohttpFetcher:
    """One shared `aiohttp.ClientSession` with keep-alive connections and a per-call timeout."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=_HEADERS,
                skip_auto_headers=("User-Agent",),
            )  # fmt: skip
        return self._session

    async def fetch(self, url: str) -> bytes:
        async with self._open().get(url) as response:
            if response.status != 200:
                raise FetchStatusError(response.status)
            return await response.read()

    def forget(self, url: str) -> None:
        """Nothing to do: aiohttp closes idle keep-alive connections after 60 s itself."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
