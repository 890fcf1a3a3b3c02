"""Why a scrape failed: one exception tree, all caught by the scrape loop's failure path."""

from __future__ import annotations


class FetchError(Exception):
    """A scrape did not return a 200 page (status, connection, timeout or protocol failure)."""


class FetchStatusError(FetchError):
    """The server answered with a status other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FetchConnectionError(FetchError):
    """Connecting failed, or the connection closed before a complete response."""


class FetchTimeout(FetchError):
    """No complete response (or connection) within the per-call timeout."""


class FetchProtocolError(FetchError):
    """The bytes received are not a well-formed HTTP/1.x response."""


class FetchTooLarge(FetchProtocolError):
    """The body is over the size cap."""
