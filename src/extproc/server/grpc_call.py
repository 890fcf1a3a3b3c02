"""What a gRPC method implementation sees: a session per call, errors that end it with a status.

The built-in HTTP/2 server (`extproc.server.h2`) runs one `StreamSession` per call, made by the
route's `SessionFactory`; the session gets each request message as bytes and returns the
serialised replies. Nothing here knows about frames or connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

# gRPC status codes.
OK, CANCELLED, UNKNOWN, INTERNAL, UNIMPLEMENTED, UNAVAILABLE = 0, 1, 2, 13, 12, 14
RESOURCE_EXHAUSTED = 8

_M = TypeVar("_M", bound=Message)


class StreamSession(Protocol):
    """One gRPC call. `on_message` returns the serialised replies to send, in order."""

    def on_message(self, data: bytes) -> Iterable[bytes]: ...

    def on_close(self) -> None:
        """The call ended (finished, cancelled or the connection was lost); called once."""


class GrpcError(Exception):
    """Raised by a session factory or `on_message`: ends the call with this status."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


SessionFactory = Callable[[], StreamSession]


def decode(message_type: type[_M], data: bytes) -> _M:
    """Parse a request message; an undecodable one ends the call with INTERNAL."""
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise GrpcError(INTERNAL, f"undecodable {message_type.__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    max_message_bytes: int = 64 * 1024 * 1024


class RefusedSession:
    """The session of a call refused at its headers; the refusal is sent on its first data."""

    __slots__ = ("error",)

    def __init__(self, error: GrpcError) -> None:
        self.error = error

    def on_message(self, data: bytes) -> Iterable[bytes]:
        raise self.error

    def on_close(self) -> None:
        pass
