"""Builders for the ProcessingResponse messages the picker sends to Envoy.

Envoy's contract (DESIGN.md): the destination goes in the `x-gateway-destination-endpoint`
header (overwriting any client-sent value) and in dynamic metadata under `envoy.lb`; a changed
body needs a matching Content-Length; streamed body chunks are at most 62,000 bytes.
"""

from __future__ import annotations

import json

from extproc._proto.envoy.config.core.v3 import base_pb2
from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from extproc._proto.envoy.type.v3 import http_status_pb2
from extproc.errors import PickerError

DESTINATION_HEADER = "x-gateway-destination-endpoint"
DESTINATION_METADATA_NAMESPACE = "envoy.lb"
SUBSET_HINT_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_HINT_KEY = "x-gateway-destination-endpoint-subset"
SERVED_METADATA_KEY = "x-gateway-destination-endpoint-served"
MAX_STREAMED_CHUNK = 62_000

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# Replies that never change are built and serialised once.
CONTINUE_HEADERS = pb.ProcessingResponse(request_headers=pb.HeadersResponse())
CONTINUE_RESPONSE_HEADERS = pb.ProcessingResponse(response_headers=pb.HeadersResponse())
CONTINUE_RESPONSE_BODY = pb.ProcessingResponse(response_body=pb.BodyResponse())
CONTINUE_REQUEST_TRAILERS = pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
CONTINUE_RESPONSE_TRAILERS = pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


def _set_header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()),
        append_action=_OVERWRITE,
    )


def routing_mutation(
    destination: str, content_length: int | None, extra: dict[str, str] | None = None
) -> pb.CommonResponse:
    """A CommonResponse carrying the destination header (and Content-Length if it changed)."""
    common = pb.CommonResponse()
    headers = common.header_mutation.set_headers
    headers.append(_set_header(DESTINATION_HEADER, destination))
    if content_length is not None:
        headers.append(_set_header("content-length", str(content_length)))
    for key, value in (extra or {}).items():
        headers.append(_set_header(key, value))
    return common


def set_destination_metadata(response: pb.ProcessingResponse, destination: str) -> None:
    ns = response.dynamic_metadata.fields[DESTINATION_METADATA_NAMESPACE]
    ns.struct_value.fields[DESTINATION_HEADER].string_value = destination


def headers_reply(common: pb.CommonResponse, destination: str) -> pb.ProcessingResponse:
    response = pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))
    set_destination_metadata(response, destination)
    return response


def buffered_body_reply(
    common: pb.CommonResponse, destination: str, new_body: bytes | None
) -> pb.ProcessingResponse:
    if new_body is not None:
        common.body_mutation.body = new_body
    response = pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))
    set_destination_metadata(response, destination)
    return response


def streamed_body_replies(body: bytes, end_of_stream: bool) -> list[pb.ProcessingResponse]:
    """The body as streamed_response chunks of at most MAX_STREAMED_CHUNK bytes."""
    replies: list[pb.ProcessingResponse] = []
    view = memoryview(body)
    offsets = range(0, max(len(body), 1), MAX_STREAMED_CHUNK)
    for offset in offsets:
        last = offset + MAX_STREAMED_CHUNK >= len(body)
        chunk = pb.StreamedBodyResponse(
            body=bytes(view[offset : offset + MAX_STREAMED_CHUNK]),
            end_of_stream=end_of_stream and last,
        )
        common = pb.CommonResponse(body_mutation=pb.BodyMutation(streamed_response=chunk))
        replies.append(pb.ProcessingResponse(request_body=pb.BodyResponse(response=common)))
    return replies


def streamed_passthrough_reply(chunk: bytes, end_of_stream: bool) -> pb.ProcessingResponse:
    """Echo a response body chunk unchanged (FULL_DUPLEX_STREAMED response bodies)."""
    streamed = pb.StreamedBodyResponse(body=chunk, end_of_stream=end_of_stream)
    common = pb.CommonResponse(body_mutation=pb.BodyMutation(streamed_response=streamed))
    return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))


def error_reply(error: PickerError) -> pb.ProcessingResponse:
    """The one place where a PickerError becomes what the client sees."""
    body = json.dumps(
        {
            "error": {
                "code": error.http_status,
                "type": error.code,
                "message": str(error) or error.code,
            }
        }
    ).encode()
    immediate = pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=error.http_status),  # type: ignore[arg-type]
        body=body,
        details=f"extproc_{error.code}",
    )
    immediate.headers.set_headers.append(_set_header("content-type", "application/json"))
    return pb.ProcessingResponse(immediate_response=immediate)
