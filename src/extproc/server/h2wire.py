"""HTTP/2 (RFC 9113) and HPACK (RFC 7541) wire details for the built-in gRPC server (`h2.py`):
frame and setting codes, frame encoding, the constant header blocks we send (literals without
indexing: no encoder state), the check that a client's header block leaves the HPACK
dynamic table unchanged, `PathReader`, which decodes a block's `:path` only when needed, and the
TCP keepalive of accepted connections."""

from __future__ import annotations

import socket
import struct
import urllib.parse
from dataclasses import dataclass

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
# Flags.
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 6, 7, 8, 9
ENHANCE_YOUR_CALM = 0xB
ERROR_NAMES = {
    PROTOCOL_ERROR: "PROTOCOL_ERROR", INTERNAL_ERROR: "INTERNAL_ERROR",
    FLOW_CONTROL_ERROR: "FLOW_CONTROL_ERROR", FRAME_SIZE_ERROR: "FRAME_SIZE_ERROR",
    COMPRESSION_ERROR: "COMPRESSION_ERROR", ENHANCE_YOUR_CALM: "ENHANCE_YOUR_CALM",
}  # fmt: skip
# Settings.
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_MAX_CONCURRENT_STREAMS = 0x1, 0x3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
# What we advertise: large windows and frames, so that a 100 KB body is one frame and no
# WINDOW_UPDATE is needed for most streams.
RECEIVE_WINDOW = 16 * 1024 * 1024
RECEIVE_MAX_FRAME = 1024 * 1024
MAX_HEADER_BLOCK = 64 * 1024
MAX_CONTINUATIONS = 64
MAX_STATUS_MESSAGE = 1024  # characters of grpc-message: a header block must fit one frame
MAX_CONCURRENT_STREAMS = 4096  # Envoy opens one stream per HTTP request in flight
# Client resets of streams that never delivered a message: a burst, then a sustained rate per
# second. Opening and resetting streams in a loop ("rapid reset", CVE-2023-44487) gets past
# the concurrent-stream cap and makes the server start a call per stream; past the budget the
# connection gets GOAWAY ENHANCE_YOUR_CALM. Resets after a message are not counted: Envoy
# ends every ext_proc stream with a reset once its HTTP request is done, thousands a second
# under load, and such a stream cost no more than the request it served. nghttp2 allows
# 1,000 then 33/s.
RESET_BURST = 1000
RESET_RATE = 1000.0


FRAME_HEADER = struct.Struct(">HBBBI")  # 24-bit length as 16 + 8 bits, type, flags, stream
SETTING = struct.Struct(">HI")
U32 = struct.Struct(">I")
GRPC_PREFIX = struct.Struct(">BI")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; `first` holds the pattern bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman coding (§6.2.2)."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


# `:status: 200` is static-table entry 8; `content-type` is static name 31.
RESPONSE_HEADERS = b"\x88" + hpack_int(31, 4) + hpack_int(16, 7) + b"application/grpc"


def status_block(status: int, message: str) -> bytes:
    block = literal(b"grpc-status", str(status).encode())
    if message:
        # grpc-message is percent-encoded (gRPC HTTP/2 protocol, "Responses"), and bounded so
        # that the block fits one frame of the smallest size a client may allow (16 KB).
        message = message[:MAX_STATUS_MESSAGE]
        encoded = urllib.parse.quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
        block += literal(b"grpc-message", encoded.encode())
    return block


def hpack_int_end(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """Decode an HPACK integer at `pos`: (value, position after it)."""
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value == limit:
        shift = 0
        while True:
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value, pos


def leaves_table_unchanged(block: bytes) -> bool:
    """True when an HPACK block holds only indexed fields and literals without indexing or
    never indexed (RFC 7541 §6): decoding it neither adds to nor resizes the dynamic table."""
    pos, end = 0, len(block)
    try:
        while pos < end:
            first = block[pos]
            if first & 0x80:  # indexed field
                _, pos = hpack_int_end(block, pos, 7)
            elif first & 0xE0 == 0x00 or first & 0xF0 == 0x10:  # literal, not indexed
                index, pos = hpack_int_end(block, pos, 4)
                for _ in range(2 if index == 0 else 1):  # a new name, then the value
                    size, pos = hpack_int_end(block, pos, 7)
                    pos += size
            else:  # incremental indexing (01xxxxxx) or a table size update (001xxxxx)
                return False
    except IndexError:
        return False  # truncated: the decoder reports it
    return pos == end


# Remembered `:path`s of header blocks per connection (see `PathReader`).
_PATH_CACHE_SIZE = 64
_PATH_CACHE_BLOCK = 1024  # bytes: Envoy's blocks are ~100


class PathReader:
    """The `:path` of each header block of one connection, through its HPACK decoder."""

    __slots__ = ("_decoder", "_paths")

    def __init__(self) -> None:
        self._decoder = hpack.Decoder()  # 4,096-byte table: we never raise the default
        self._paths: dict[bytes, bytes] = {}

    def path_of(self, block: bytes) -> bytes:
        """The `:path` of a header block, decoding it only when its meaning may have changed.

        Envoy sends the same block for every call on a connection (its `:path` as a literal
        without indexing, the rest indexed), and HPACK decoding is a third of the transport's
        CPU per call. A block that leaves the dynamic table unchanged means the same thing
        until some block changes the table, so its path is remembered until then.
        """
        # Only small blocks are remembered (Envoy's are ~100 bytes): at most 64 KB per connection.
        stateless = len(block) <= _PATH_CACHE_BLOCK and leaves_table_unchanged(block)
        if stateless:
            path = self._paths.get(block)
            if path is not None:
                return path
        headers = self._decoder.decode(block, raw=True)  # raises hpack.HPACKError
        path = next((bytes(value) for name, value in headers if name == b":path"), b"")
        if not stateless or len(self._paths) >= _PATH_CACHE_SIZE:
            self._paths.clear()
        if stateless:
            self._paths[block] = path
        return path


class ResetBudget:
    """A token bucket for a peer's stream resets: `spend(now)` is False once it is empty."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, burst: int = RESET_BURST, rate: float = RESET_RATE) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._tokens = float(burst)
        self._at: float | None = None

    def spend(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= 1.0
        return self._tokens >= 0.0


@dataclass(slots=True)
class HeaderBlock:
    """A header block whose HEADERS frame lacked END_HEADERS."""

    stream_id: int
    end_stream: bool
    fragments: list[bytes]
    size: int = 0

    def __post_init__(self) -> None:
        self.size = sum(map(len, self.fragments))


# TCP keepalive on accepted connections: a client that vanished without closing (a node lost,
# a partition) is detected after ~90 s and its streams end, instead of holding them until the
# kernel's two-hour default.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 60, 10, 3


def enable_keepalive(sock: socket.socket) -> None:
    """TCP keepalive probes after KEEPALIVE_IDLE_S of silence (Linux timings where offered)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
