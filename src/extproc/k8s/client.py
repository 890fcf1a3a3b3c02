"""The Kubernetes API client: configuration loading and raw JSON requests.

We use the official `kubernetes` client for what it does well (kubeconfig and in-cluster
configuration, TLS, bearer-token refresh, connection pooling) but not its typed models: every
object is handled as the JSON the API server sent, so Pods and custom resources take the same
path, and `ApiClient.call_api` returns the unread urllib3 response, which watches stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from extproc.errors import ConfigError

JSON = dict[str, Any]
Timeout = float | tuple[float, float]


class ApiError(Exception):
    """A request to the API server failed: HTTP status (0 without one) and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason


def load_api_client(kubeconfig: Path | None) -> Any:
    """A `kubernetes.client.ApiClient` for `kubeconfig`, else in-cluster, else ~/.kube/config."""
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    config: Any = kube_config  # the loaders are untyped
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError, yaml.YAMLError) as exc:
        where = str(kubeconfig) if kubeconfig else "in-cluster or ~/.kube/config"
        raise ConfigError(f"Kubernetes configuration ({where}): {exc}") from exc
    # No urllib3 retries: a read timeout must surface, not re-send the request (a re-sent Lease
    # PUT conflicts with its own first write; a re-sent list or watch hides a hung server).
    # Watches and leader election have their own retry and backoff.
    configuration.retries = 0
    return client.ApiClient(configuration)


def open_request(
    api: Any,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Mapping[str, Any] | None = None,
    timeout: Timeout,
) -> Any:
    """Send a request; return the unread urllib3 response (status not checked).

    Transport failures become ApiError(0, ...).
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        request = api.param_serialize(
            method,
            path,
            query_params=list(query) or None,
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        return api.call_api(*request, _request_timeout=timeout).response
    except Exception as exc:  # urllib3/ssl/socket errors, ApiException: all mean "no answer"
        raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc


def request_json(
    api: Any,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Mapping[str, Any] | None = None,
    timeout: Timeout,
) -> JSON:
    """Send a request and decode the JSON answer; raise ApiError unless the status is 2xx."""
    response = open_request(api, method, path, query=query, body=body, timeout=timeout)
    try:
        data = response.data
    except Exception as exc:
        raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
    finally:
        response.release_conn()
    if not 200 <= response.status < 300:
        raise ApiError(response.status, _reason(data) or str(response.reason))
    try:
        decoded = json.loads(data)
    except ValueError as exc:
        raise ApiError(response.status, f"invalid JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise ApiError(response.status, "expected a JSON object")
    return decoded


def _reason(data: bytes) -> str:
    """The `message` of a Kubernetes Status body, if there is one."""
    try:
        status = json.loads(data)
    except ValueError:
        return ""
    return str(status.get("message", "")) if isinstance(status, dict) else ""
