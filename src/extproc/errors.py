"""The picker's error tree: each error carries a machine-readable code and an HTTP status.

The code doubles as the `error_code` metric label. The mapping to an Envoy ImmediateResponse
lives in one place, `extproc.server.replies.error_reply`.
"""

from __future__ import annotations

from typing import ClassVar


class PickerError(Exception):
    """Base class: an error answered to the client instead of routing the request."""

    code: ClassVar[str] = "Internal"
    http_status: ClassVar[int] = 500


class BadRequest(PickerError):
    """The request body is not a JSON object with a string `model` (or is otherwise unusable)."""

    code, http_status = "BadRequest", 400


class ModelNotFound(PickerError):
    """No InferenceModel serves the requested model name."""

    code, http_status = "ModelNotFound", 404


class PayloadTooLarge(PickerError):
    """The request body is larger than the picker is configured to buffer."""

    code, http_status = "PayloadTooLarge", 413


class PoolSaturated(PickerError):
    """Every endpoint is over the saturation thresholds and the request may be shed."""

    code, http_status = "InferencePoolResourceExhausted", 429


class NoEndpoint(PickerError):
    """No endpoint can take the request: none ready, or none in the proxy's subset hint."""

    code, http_status = "ServiceUnavailable", 503


class ConfigError(Exception):
    """A configuration file is invalid; the message names the file, object and field."""
