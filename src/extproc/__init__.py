"""Endpoint picker for LLM inference gateways: an Envoy ext_proc server for vLLM pools."""

__version__ = "0.1.0"
