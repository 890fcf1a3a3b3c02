"""gRPC health checking (`grpc.health.v1.Health/Check`) on the built-in HTTP/2 server.

The ext_proc port answers health checks as it did under grpcio, so that a gateway may probe
the port it talks to; the dedicated plaintext health port (kubelet probes, `Watch`) stays on
grpcio's full implementation.
"""

from __future__ import annotations

from collections.abc import Callable

from grpc_health.v1 import health_pb2

from extproc.server.grpc_call import GrpcError, decode

CHECK_PATH = "/grpc.health.v1.Health/Check"
NOT_FOUND = 5  # gRPC status for a service nobody registered


class HealthCheckSession:
    """One unary Check call: the status of the named service, or NOT_FOUND."""

    __slots__ = ("_status_of",)

    def __init__(self, status_of: Callable[[str], int | None]) -> None:
        self._status_of = status_of

    def on_message(self, data: bytes) -> list[bytes]:
        request = decode(health_pb2.HealthCheckRequest, data)
        status = self._status_of(request.service)
        if status is None:
            raise GrpcError(NOT_FOUND, f"unknown service {request.service!r}")
        return [health_pb2.HealthCheckResponse(status=status).SerializeToString()]

    def on_close(self) -> None:
        pass
