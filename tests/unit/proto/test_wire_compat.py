"""Our minimal protos against the full upstream schema (envoy-data-plane): same bytes, same data.

Every message the picker reads or writes is encoded with one schema and decoded with the other.
"""

from __future__ import annotations

import pytest
from envoy_data_plane.envoy.config.core import v3 as up_core
from envoy_data_plane.envoy.service.ext_proc import v3 as up
from envoy_data_plane.envoy.type import v3 as up_type
from envoy_data_plane.google import protobuf as up_pb
from google.protobuf import struct_pb2

from extproc._proto.envoy.config.core.v3 import base_pb2
from extproc._proto.envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as ours
from extproc._proto.envoy.type.v3 import http_status_pb2
from extproc.errors import NoEndpoint
from extproc.server import replies


def _upstream_request_headers() -> up.ProcessingRequest:
    from envoy_data_plane.envoy.extensions.filters.http.ext_proc import v3 as up_mode

    return up.ProcessingRequest(
        request_headers=up.HttpHeaders(
            headers=up_core.HeaderMap(
                headers=[
                    up_core.HeaderValue(key=":path", raw_value=b"/v1/chat/completions"),
                    up_core.HeaderValue(key="x-request-id", raw_value=b"abc"),
                ]
            ),
            end_of_stream=False,
        ),
        metadata_context=up_core.Metadata(
            filter_metadata={
                replies.SUBSET_HINT_NAMESPACE: up_pb.Struct(
                    fields={
                        replies.SUBSET_HINT_KEY: up_pb.Value(
                            list_value=up_pb.ListValue(
                                values=[up_pb.Value(string_value="10.0.0.1:8000")]
                            )
                        )
                    }
                )
            }
        ),
        protocol_config=up.ProtocolConfiguration(
            request_body_mode=up_mode.ProcessingModeBodySendMode.FULL_DUPLEX_STREAMED,
            response_body_mode=up_mode.ProcessingModeBodySendMode.STREAMED,
        ),
        observability_mode=False,
    )


def test_request_headers_upstream_to_ours() -> None:
    decoded = ours.ProcessingRequest.FromString(bytes(_upstream_request_headers()))
    headers = {h.key: h.raw_value for h in decoded.request_headers.headers.headers}
    assert headers == {":path": b"/v1/chat/completions", "x-request-id": b"abc"}
    assert decoded.protocol_config.request_body_mode == (
        processing_mode_pb2.ProcessingMode.FULL_DUPLEX_STREAMED
    )
    hint = decoded.metadata_context.filter_metadata[replies.SUBSET_HINT_NAMESPACE]
    assert hint.fields[replies.SUBSET_HINT_KEY].list_value.values[0].string_value == "10.0.0.1:8000"


@pytest.mark.parametrize("kind", ["request_body", "response_body"])
def test_body_upstream_to_ours(kind: str) -> None:
    message = up.ProcessingRequest(**{kind: up.HttpBody(body=b'{"model":"m"}', end_of_stream=True)})
    decoded = ours.ProcessingRequest.FromString(bytes(message))
    assert decoded.WhichOneof("request") == kind
    body = getattr(decoded, kind)
    assert (body.body, body.end_of_stream) == (b'{"model":"m"}', True)


def test_trailers_and_response_headers_upstream_to_ours() -> None:
    trailers = up.ProcessingRequest(request_trailers=up.HttpTrailers(trailers=up_core.HeaderMap()))
    assert ours.ProcessingRequest.FromString(bytes(trailers)).WhichOneof("request") == (
        "request_trailers"
    )
    headers = up.ProcessingRequest(
        response_headers=up.HttpHeaders(
            headers=up_core.HeaderMap(
                headers=[up_core.HeaderValue(key="content-type", raw_value=b"text/event-stream")]
            ),
            end_of_stream=True,
        )
    )
    decoded = ours.ProcessingRequest.FromString(bytes(headers))
    assert decoded.response_headers.end_of_stream
    assert decoded.response_headers.headers.headers[0].raw_value == b"text/event-stream"


def _upstream(reply: ours.ProcessingResponse) -> up.ProcessingResponse:
    return up.ProcessingResponse.parse(reply.SerializeToString())


def test_buffered_routing_reply_ours_to_upstream() -> None:
    common = replies.routing_mutation("10.0.0.1:8000", 42)
    decoded = _upstream(replies.buffered_body_reply(common, "10.0.0.1:8000", b"x" * 42))
    response = decoded.request_body.response
    assert response.status == up.CommonResponseResponseStatus.CONTINUE
    set_headers = response.header_mutation.set_headers
    assert [(h.header.key, h.header.raw_value) for h in set_headers] == [
        (replies.DESTINATION_HEADER, b"10.0.0.1:8000"),
        ("content-length", b"42"),
    ]
    assert all(
        h.append_action == up_core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
        for h in set_headers
    )
    assert response.body_mutation.body == b"x" * 42
    lb = decoded.dynamic_metadata.fields[replies.DESTINATION_METADATA_NAMESPACE]
    assert lb.struct_value.fields[replies.DESTINATION_HEADER].string_value == "10.0.0.1:8000"


def test_streamed_body_replies_ours_to_upstream() -> None:
    body = b"y" * 130_000
    chunks = [_upstream(r) for r in replies.streamed_body_replies(body, end_of_stream=True)]
    streamed = [c.request_body.response.body_mutation.streamed_response for c in chunks]
    assert [len(s.body) for s in streamed] == [62_000, 62_000, 6_000]
    assert [s.end_of_stream for s in streamed] == [False, False, True]
    assert b"".join(s.body for s in streamed) == body


def test_headers_reply_ours_to_upstream() -> None:
    common = replies.routing_mutation("10.0.0.1:8000,10.0.0.2:8000", 10)
    decoded = _upstream(replies.headers_reply(common, "10.0.0.1:8000,10.0.0.2:8000"))
    assert decoded.request_headers.response.header_mutation.set_headers[0].header.raw_value == (
        b"10.0.0.1:8000,10.0.0.2:8000"
    )


def test_immediate_response_ours_to_upstream() -> None:
    decoded = _upstream(replies.error_reply(NoEndpoint("none ready")))
    immediate = decoded.immediate_response
    assert immediate.status.code == up_type.StatusCode.ServiceUnavailable
    assert b'"ServiceUnavailable"' in immediate.body
    assert immediate.headers.set_headers[0].header.key == "content-type"
    assert immediate.details == "extproc_ServiceUnavailable"


def test_constant_replies_ours_to_upstream() -> None:
    assert _upstream(replies.CONTINUE_HEADERS).request_headers is not None
    assert _upstream(replies.CONTINUE_RESPONSE_BODY).response_body is not None
    passthrough = _upstream(replies.streamed_passthrough_reply(b"data: x\n\n", True))
    streamed = passthrough.response_body.response.body_mutation.streamed_response
    assert (streamed.body, streamed.end_of_stream) == (b"data: x\n\n", True)


def test_status_codes_match_upstream() -> None:
    for name, number in http_status_pb2.StatusCode.items():
        assert up_type.StatusCode[name].value == number
    for name, number in base_pb2.HeaderValueOption.HeaderAppendAction.items():
        assert up_core.HeaderValueOptionHeaderAppendAction[name].value == number
    assert struct_pb2.Struct  # the well-known Struct is shared, not redefined
