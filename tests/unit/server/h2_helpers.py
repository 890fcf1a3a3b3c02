"""Shared pieces of the built-in HTTP/2 server's tests: echo sessions and a grpcio call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc

from extproc.server.grpc_call import UNAVAILABLE, GrpcError

ECHO = "/test.Echo/Chat"
REFUSE = "/test.Echo/Refused"


class Recorder:
    """Sessions that answer each message with it reversed (b"boom" raises, b"many" replies 3x)."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.received: list[bytes] = []
        self.closed_event = asyncio.Event()

    def session(self) -> EchoSession:
        self.opened += 1
        return EchoSession(self)


class EchoSession:
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def on_message(self, data: bytes) -> Iterable[bytes]:
        self._recorder.received.append(data)
        if data == b"boom":
            raise RuntimeError("handler bug")
        if data == b"many":
            return [b"1", b"2", b"3"]
        return [data[::-1]]

    def on_close(self) -> None:
        self._recorder.closed += 1
        self._recorder.closed_event.set()


def refuse() -> EchoSession:
    raise GrpcError(UNAVAILABLE, "standby replica: not the leader")


def chat(channel: grpc.aio.Channel, path: str = ECHO) -> grpc.aio.StreamStreamMultiCallable:
    return channel.stream_stream(path)
