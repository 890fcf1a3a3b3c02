"""Fixtures shared with the Kubernetes tests: the fake API server and a client for it."""

from tests.unit.k8s.conftest import api_client, apiserver  # noqa: F401
